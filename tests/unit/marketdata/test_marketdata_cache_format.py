"""The compact text candle partitions are kept in Memcached as."""
import pytest

from services.marketdata.hotcache import pack_candle_rows, unpack_candle_rows

ROWS = [[1_700_000_000_000, "64000.01", "64010.00", "63990.5", "64000.00", "0.00001",
         "0.6400001", 1],
        [1_700_000_060_000, "1000000000000", "1000000000000", "0.00000001", "0.00000001",
         "123456789.123456789", "0", 4_000_000]]


def test_rows_come_back_exactly_as_tuples_with_their_ints():
    packed = pack_candle_rows(ROWS)
    assert packed.count(b",") == 15
    assert unpack_candle_rows(packed) == tuple(map(tuple, ROWS))


def test_an_empty_partition_is_an_empty_text_not_a_miss():
    assert pack_candle_rows([]) == b""
    assert unpack_candle_rows(b"") == ()


def test_a_value_with_a_comma_is_not_packed():
    assert pack_candle_rows([[1, "1,5", "1", "1", "1", "1", "1", 1]]) is None


@pytest.mark.parametrize("raw", [
    b'[[1700000000000,"1","1","1","1","1","1",1]]',       # the former JSON entries
    b"1,2,3",                                              # not whole rows
    b"x,1,1,1,1,1,1,1",                                   # open_time not an int
    b"1,1,1,1,1,1,1,1.5",                                 # trade_count not an int
    "1,\u00e9,1,1,1,1,1,1".encode(),                      # not ASCII
])
def test_anything_else_is_a_miss(raw):
    assert unpack_candle_rows(raw) is None
