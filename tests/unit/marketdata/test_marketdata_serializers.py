"""The faster decimal/timestamp serializers produce the driver's exact bytes."""
from decimal import Decimal

from cassandra import cqltypes
from hypothesis import given
from hypothesis import strategies as st

from services.marketdata.storage import _DecimalColumn, _TimestampColumn


@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_decimal_bytes_equal_the_drivers(value):
    assert _DecimalColumn.serialize(value, 4) == cqltypes.DecimalType.serialize(value, 4)


def test_decimal_edge_cases():
    for text in ("0", "-0.00", "64000.01", "0.25000", "1E+3", "-128", "-129", "127", "128", "255",
                 "100000000000000000000000000000.000000000001", "-1E-40"):
        value = Decimal(text)
        assert _DecimalColumn.serialize(value, 4) == cqltypes.DecimalType.serialize(value, 4), text


@given(st.integers(-(2**63), 2**63 - 1))
def test_timestamp_bytes_equal_the_drivers(value):
    assert _TimestampColumn.serialize(value, 4) == cqltypes.DateType.serialize(value, 4)
