"""The one reconnect loop (services.common.consumer.keep_consuming): a lost
connection is followed by ``on_loss`` and a pause, then a new connection;
stopping ends the loop without a pause."""
from services.common.consumer import keep_consuming


class Flaky:
    """A consumer whose connection fails ``failures`` times, then is stopped
    from inside its third life (as ``stop()`` from another thread would)."""

    def __init__(self, failures: int):
        self.failures = failures
        self.lives = 0
        self.running = True
        self.log: list = []

    def consume(self):
        self.lives += 1
        self.log.append("consume")
        if self.lives <= self.failures:
            raise ConnectionError("broker went away")
        self.running = False


def test_each_loss_resets_state_and_pauses_before_the_next_connection():
    flaky = Flaky(failures=2)
    keep_consuming(flaky.consume, lambda: flaky.running, lambda: flaky.log.append("lost"),
                   delay_s=0.5, what="test consumer",
                   sleep=lambda seconds: flaky.log.append(("sleep", seconds)))
    assert flaky.log == ["consume", "lost", ("sleep", 0.5), "consume", "lost", ("sleep", 0.5),
                         "consume", "lost"]


def test_a_failure_while_stopping_is_not_retried():
    log = []
    state = {"running": True}

    def consume():
        state["running"] = False
        raise ConnectionError("closed by stop()")
    keep_consuming(consume, lambda: state["running"], lambda: log.append("lost"),
                   sleep=lambda seconds: log.append("sleep"))
    assert log == ["lost"]


def test_a_stopped_consumer_never_connects():
    keep_consuming(lambda: (_ for _ in ()).throw(AssertionError("connected")), lambda: False)
