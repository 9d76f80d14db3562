"""The benchmarks' pure statistics (bench/common.py) and the order path
bench's op mix: what the printed figures are computed with."""
import random
import statistics

from bench.common import percentile, poisson_arrivals, size_histogram
from bench.order_path_bench import REFERENCE_PRICE, draw_kind, limit_terms


def test_percentile_is_the_nearest_rank():
    values = list(range(1, 1001))   # 1..1000, shuffled on purpose
    random.Random(3).shuffle(values)
    assert percentile(values, 0.5) == 501
    assert percentile(values, 0.99) == 991
    assert percentile(values, 0.999) == 1000
    assert percentile(values, 1.0) == 1000
    assert percentile([7], 0.999) == 7


def test_percentile_of_nothing_is_nan():
    assert percentile([], 0.5) != percentile([], 0.5)


def test_poisson_arrivals_have_the_rate_and_exponential_gaps():
    arrivals = poisson_arrivals(1000.0, 60.0, random.Random(1))
    assert all(0 <= a < 60.0 for a in arrivals)
    assert arrivals == sorted(arrivals)
    # 60,000 expected; the standard deviation of the count is sqrt(60,000) ~ 245.
    assert 59_000 < len(arrivals) < 61_000
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    # Exponential gaps: mean 1 ms and a standard deviation equal to the mean
    # (a fixed-interval schedule would have none).
    assert abs(statistics.mean(gaps) - 0.001) < 0.00005
    assert abs(statistics.pstdev(gaps) - 0.001) < 0.0001


def test_poisson_arrivals_are_reproducible_and_empty_without_rate():
    assert poisson_arrivals(50, 2, random.Random(9)) == poisson_arrivals(50, 2, random.Random(9))
    assert poisson_arrivals(0, 10, random.Random(1)) == []
    assert poisson_arrivals(10, 0, random.Random(1)) == []


def test_size_histogram_buckets_by_powers_of_two():
    assert size_histogram([1, 1, 2, 3, 4, 5, 8, 9, 200]) == [
        ("1", 2, 2), ("2", 1, 2), ("3-4", 2, 7), ("5-8", 2, 13), ("9-16", 1, 9),
        ("129-256", 1, 200)]
    assert size_histogram([]) == []
    assert size_histogram([0]) == []


def test_the_op_mix_has_its_shares():
    rng = random.Random(5)
    kinds = [draw_kind(rng) for _ in range(100_000)]
    share = {k: kinds.count(k) / len(kinds) for k in set(kinds)}
    assert abs(share["refusal"] - 0.01) < 0.002
    assert abs(share["cancel"] - 0.25) < 0.01
    assert abs(share["market"] - 0.05) < 0.005
    assert abs(share["limit"] - 0.69) < 0.01


def test_limit_prices_are_on_the_tick_and_a_third_cross():
    rng = random.Random(2)
    terms = [limit_terms(rng) for _ in range(30_000)]
    crossing = 0
    for side, price in terms:
        assert price == f"{float(price):.2f}" and float(price) > 0
        crossing += (float(price) > REFERENCE_PRICE) if side == "buy" else \
            (float(price) < REFERENCE_PRICE)
    assert abs(crossing / len(terms) - 1 / 3) < 0.02


def test_cpu_delta_counts_a_restarted_process_from_its_start():
    from bench.common import KERNEL, MACHINE, REST, cpu_delta
    before = {"orders": {10: 5.0, 11: 2.0}, "rabbitmq": {20: 100.0}, KERNEL: 1.0, MACHINE: 50.0}
    # rabbitmq restarted (pid 21 new, 1.5 s so far); orders 11 went away.
    after = {"orders": {10: 6.0}, "rabbitmq": {21: 1.5}, KERNEL: 1.5, MACHINE: 54.0}
    delta = cpu_delta(before, after)
    assert delta["orders"] == 1.0
    assert delta["rabbitmq"] == 1.5
    assert delta[KERNEL] == 0.5
    assert delta[MACHINE] == 4.0
    assert delta[REST] == 1.5


def test_cost_map_counts_growth_per_channel_and_groups_reply_queues():
    from bench.order_path_bench import _queue_family, cost_delta
    assert _queue_family("rpc.reply-standalone_rpc_proxy-78c2e4ba-19a5-4cd5-b60b-07a474383e28") \
        == "rpc.reply-standalone_rpc_proxy-*"
    assert _queue_family("rpc-orders") == "rpc-orders"
    before = {"statements": {(1, True): ("SELECT 1", 10, 5.0, 10)},
              "commits": (100, 1), "wal": (7, 8, 900),
              "rabbit": {("published", "q", "<0.1.0>", "q", "m"): 40.0,
                         ("published", "q", "<0.2.0>", "q", "m"): 9.0}}
    after = {"statements": {(1, True): ("SELECT 1", 14, 6.5, 14),
                            (2, False): ("INSERT ...", 3, 1.0, 3)},
             "commits": (110, 1), "wal": (9, 9, 950),
             # channel 2 closed in between (its count lost), channel 3 opened (from zero)
             "rabbit": {("published", "q", "<0.1.0>", "q", "m"): 45.0,
                        ("published", "q", "<0.3.0>", "q", "m"): 2.0}}
    cost = cost_delta(before, after)
    assert cost["statements"] == {(1, True): ("SELECT 1", 4, 1.5, 4),
                                  (2, False): ("INSERT ...", 3, 1.0, 3)}
    assert cost["queues"] == {("published", "q"): 7.0}
    assert cost["commits"] == [10, 0] and cost["wal"] == [2, 1, 50]


def test_only_an_answer_with_a_code_counts_as_answered():
    """A request the clients send that gets no coded answer (a timeout, a
    lost connection, a 5xx) is a failure in the 'every arrival answered'
    verdict, not a refusal."""
    from nameko.exceptions import RemoteError, RpcTimeout

    from bench.order_path_bench import BatchRefused, RestRefused, answered_with_a_code
    assert answered_with_a_code(RestRefused(400, -2011, "Unknown order sent."))
    assert not answered_with_a_code(RestRefused(503, -1003, "busy"))
    assert answered_with_a_code(BatchRefused({"code": "ORDER_NOT_OPEN", "message": "gone"}))
    assert answered_with_a_code(RemoteError("OrderRefused", "ORDER_NOT_OPEN: gone"))
    assert not answered_with_a_code(RpcTimeout(10))
    assert not answered_with_a_code(ConnectionError("reset"))


def test_the_acceptance_bench_splits_a_batch_into_fixed_and_per_order_costs():
    from bench.acceptance_bench import fit
    fixed, per_order = fit([(1, 2.4 + 0.25), (5, 2.4 + 1.25), (30, 2.4 + 7.5), (60, 2.4 + 15)])
    assert abs(fixed - 2.4) < 1e-9 and abs(per_order - 0.25) < 1e-9
    assert fit([(30, 9.0)]) == (9.0, 0.0)   # one size: no slope to read
