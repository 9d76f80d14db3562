"""Address and transaction-id formats per chain (published test vectors)."""
import pytest

from services.wallets.addresses import (
    deposit_address,
    keccak256,
    normalize_address,
    normalize_txid,
)
from services.wallets.assets import ASSETS
from services.wallets.errors import InvalidAddress, InvalidId

BTC, ETH, USDT = ASSETS["BTC"], ASSETS["ETH"], ASSETS["USDT"]


def test_keccak256_is_ethereums_not_sha3():
    assert keccak256(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    assert keccak256(b"abc").hex() == "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"
    assert keccak256(b"a" * 200).hex() == keccak256(b"a" * 200).hex()  # multi-block input works


@pytest.mark.parametrize("address, stored", [
    ("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"),
    ("bc1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qccfmv3",
     "bc1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qccfmv3"),
    ("bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y",
     "bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y"),
    ("1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"),
    ("3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy", "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"),
])
def test_accepts_valid_bitcoin_addresses(address, stored):
    assert normalize_address(BTC, address) == stored


@pytest.mark.parametrize("address", [
    "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5",        # bad checksum
    "BC1QW508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4",        # mixed case
    "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx",        # testnet
    "bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7k7grplx",  # v1 with bech32
    "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN3",                # base58 checksum
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",        # an Ethereum address
    "", "bc1", 12345, None,
])
def test_refuses_invalid_bitcoin_addresses(address):
    with pytest.raises(InvalidAddress):
        normalize_address(BTC, address)


@pytest.mark.parametrize("address", [
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",        # EIP-55 vectors
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    "0x52908400098527886e0f7030069857d2e4169ee7",        # all lower: no checksum
    "0x8617E340B3D01FA5F11F306F4090FD50E238070D",        # all upper: no checksum
])
def test_accepts_ethereum_addresses_with_good_or_no_checksum(address):
    assert normalize_address(ETH, address) == address.lower()
    assert normalize_address(USDT, address) == address.lower()


@pytest.mark.parametrize("address", [
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD",        # one letter's case flipped
    "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beae",         # 39 digits
    "5aaeb6053f3e94c9b9a09f33669435e7ef1beaed00",        # no 0x
    "0xZZaeb6053f3e94c9b9a09f33669435e7ef1beaed",
    "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4",
])
def test_refuses_invalid_ethereum_addresses(address):
    with pytest.raises(InvalidAddress):
        normalize_address(ETH, address)


def test_txids_are_checked_per_chain_and_lowercased():
    assert normalize_txid(BTC, "AB" * 32) == "ab" * 32
    assert normalize_txid(ETH, "0x" + "CD" * 32) == "0x" + "cd" * 32
    for asset, txid in ((BTC, "0x" + "ab" * 32), (ETH, "ab" * 32), (BTC, "ab" * 31), (BTC, None),
                        (USDT, "0x" + "zz" * 32), (BTC, "ab" * 32 + "\n")):
        with pytest.raises(InvalidId):
            normalize_txid(asset, txid)


@pytest.mark.parametrize("asset", [BTC, ETH, USDT])
def test_generated_deposit_addresses_are_valid_for_their_chain(asset):
    for seed in range(20):
        address = deposit_address(asset, bytes([seed]) * 20)
        assert normalize_address(asset, address) == address
