"""Chain formats: address and transaction-id checks, deposit address encoding.

* Bitcoin: bech32 / bech32m segwit addresses (``bc1...``, BIP-173/350, with
  their checksum) and base58check P2PKH / P2SH (``1...`` / ``3...``).
* Ethereum (ETH and the ERC-20 USDT): ``0x`` + 40 hex digits; a mixed-case
  address must carry a valid EIP-55 checksum (Keccak-256, implemented here
  because hashlib's sha3_256 is the FIPS variant, not Keccak).
* Transaction ids: 64 hex digits (Bitcoin), ``0x`` + 64 hex digits (Ethereum).

Everything is normalised to the one spelling the ledger stores (lowercase,
except base58 which is case-sensitive), so the same address or txid written
in another case is the same key. Pure: standard library only; randomness for
new addresses is passed in.
"""
from __future__ import annotations

import hashlib
import re

from services.wallets.assets import BTC_CHAIN, EVM_CHAIN, Asset
from services.wallets.errors import InvalidAddress, InvalidId

# ---------------------------------------------------------------- public API


def normalize_address(asset: Asset, text) -> str:
    """The stored spelling of a valid address of ``asset``'s chain, else InvalidAddress."""
    if not isinstance(text, str) or not 14 <= len(text) <= 90:
        raise InvalidAddress(f"{str(text)[:100]!r} is not a {asset.code} address")
    if asset.chain == BTC_CHAIN:
        if text[:3].lower() == "bc1":
            if _decode_segwit(text) is None:
                raise InvalidAddress(f"{text!r} is not a valid bech32 {asset.code} address")
            return text.lower()
        if not _is_base58check_address(text):
            raise InvalidAddress(f"{text!r} is not a valid {asset.code} address")
        return text
    if asset.chain == EVM_CHAIN:
        if not _EVM_ADDRESS.fullmatch(text):
            raise InvalidAddress(f"{text!r} is not a 0x-prefixed 40-hex-digit {asset.code} address")
        body = text[2:]
        if body != body.lower() and body != body.upper() and not _eip55_ok(body):
            raise InvalidAddress(f"{text!r} has a wrong EIP-55 checksum")
        return "0x" + body.lower()
    raise InvalidAddress(f"no address format for chain {asset.chain}")


def normalize_txid(asset: Asset, text) -> str:
    """The stored spelling of a transaction id of ``asset``'s chain, else InvalidId."""
    pattern = _BTC_TXID if asset.chain == BTC_CHAIN else _EVM_TXID
    if not isinstance(text, str) or not pattern.fullmatch(text):
        raise InvalidId(f"txid {str(text)[:100]!r} is not a {asset.code} transaction id")
    return text.lower()


def deposit_address(asset: Asset, random_bytes: bytes) -> str:
    """A new address from 20 random bytes: P2WPKH bech32 for Bitcoin, a
    lowercase hex account for Ethereum. In production the key material comes
    from the custody system; here the bytes are just unique."""
    if len(random_bytes) != 20:
        raise ValueError("20 bytes expected")
    if asset.chain == BTC_CHAIN:
        return _encode_segwit("bc", 0, random_bytes)
    return "0x" + random_bytes.hex()


# ---------------------------------------------------------------- formats

_BTC_TXID = re.compile(r"[0-9a-fA-F]{64}")
_EVM_TXID = re.compile(r"0x[0-9a-fA-F]{64}")
_EVM_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")

# ---------------------------------------------------------------- bech32 (BIP-173, BIP-350)

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32 = 1
_BECH32M = 0x2BC830A3
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _polymod(values) -> int:
    checksum = 1
    for value in values:
        top = checksum >> 25
        checksum = (checksum & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            if (top >> i) & 1:
                checksum ^= _GENERATOR[i]
    return checksum


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data, from_bits: int, to_bits: int, pad: bool):
    acc = bits = 0
    out = []
    maxv = (1 << to_bits) - 1
    for value in data:
        acc = (acc << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (to_bits - bits)) & maxv)
    elif bits >= from_bits or ((acc << (to_bits - bits)) & maxv):
        return None
    return out


def _decode_segwit(address: str):
    """(version, program) of a mainnet segwit address, or None."""
    if address != address.lower() and address != address.upper():
        return None
    address = address.lower()
    pos = address.rfind("1")
    if pos < 1 or pos + 7 > len(address) or len(address) > 90:
        return None
    hrp, data = address[:pos], [_CHARSET.find(c) for c in address[pos + 1:]]
    if hrp != "bc" or -1 in data:
        return None
    constant = _polymod(_hrp_expand(hrp) + data)
    if constant not in (_BECH32, _BECH32M) or not data:
        return None
    version = data[0]
    program = _convert_bits(data[1:-6], 5, 8, False)
    if program is None or not 2 <= len(program) <= 40 or version > 16:
        return None
    if version == 0 and (len(program) not in (20, 32) or constant != _BECH32):
        return None
    if version > 0 and constant != _BECH32M:
        return None
    return version, bytes(program)


def _encode_segwit(hrp: str, version: int, program: bytes) -> str:
    data = [version] + _convert_bits(program, 8, 5, True)
    constant = _BECH32 if version == 0 else _BECH32M
    polymod = _polymod(_hrp_expand(hrp) + data + [0] * 6) ^ constant
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[d] for d in data + checksum)


# ---------------------------------------------------------------- base58check

_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BASE58_INDEX = {c: i for i, c in enumerate(_BASE58)}


def _is_base58check_address(text: str) -> bool:
    """A mainnet P2PKH (version 0x00) or P2SH (0x05) address with a good checksum."""
    if not 25 <= len(text) <= 35 or any(c not in _BASE58_INDEX for c in text):
        return False
    number = 0
    for c in text:
        number = number * 58 + _BASE58_INDEX[c]
    body = number.to_bytes((number.bit_length() + 7) // 8, "big")
    raw = b"\0" * (len(text) - len(text.lstrip("1"))) + body
    if len(raw) != 25 or raw[0] not in (0x00, 0x05):
        return False
    payload, checksum = raw[:21], raw[21:]
    return hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4] == checksum


# ---------------------------------------------------------------- Keccak-256 / EIP-55

_MASK = (1 << 64) - 1
_ROUND_CONSTANTS = (
    0x0000000000000001, 0x0000000000008082, 0x800000000000808A, 0x8000000080008000,
    0x000000000000808B, 0x0000000080000001, 0x8000000080008081, 0x8000000000008009,
    0x000000000000008A, 0x0000000000000088, 0x0000000080008009, 0x000000008000000A,
    0x000000008000808B, 0x800000000000008B, 0x8000000000008089, 0x8000000000008003,
    0x8000000000008002, 0x8000000000000080, 0x000000000000800A, 0x800000008000000A,
    0x8000000080008081, 0x8000000000008080, 0x0000000080000001, 0x8000000080008008,
)
# _ROTATIONS[x][y]
_ROTATIONS = (
    (0, 36, 3, 41, 18), (1, 44, 10, 45, 2), (62, 6, 43, 15, 61),
    (28, 55, 25, 21, 56), (27, 20, 39, 8, 14),
)


def _rotl(value: int, shift: int) -> int:
    return ((value << shift) | (value >> (64 - shift))) & _MASK if shift else value


def _keccak_f(state: list[list[int]]) -> list[list[int]]:
    for constant in _ROUND_CONSTANTS:
        c = [state[x][0] ^ state[x][1] ^ state[x][2] ^ state[x][3] ^ state[x][4] for x in range(5)]
        d = [c[(x - 1) % 5] ^ _rotl(c[(x + 1) % 5], 1) for x in range(5)]
        b = [[0] * 5 for _ in range(5)]
        for x in range(5):
            for y in range(5):
                b[y][(2 * x + 3 * y) % 5] = _rotl(state[x][y] ^ d[x], _ROTATIONS[x][y])
        state = [[b[x][y] ^ (~b[(x + 1) % 5][y] & b[(x + 2) % 5][y]) for y in range(5)]
                 for x in range(5)]
        state[0][0] ^= constant
    return state


def keccak256(data: bytes) -> bytes:
    """Keccak-256 as Ethereum uses it (original padding 0x01, not SHA-3's 0x06)."""
    rate = 136
    message = bytearray(data) + b"\x01"
    message += b"\0" * (-len(message) % rate)
    message[-1] |= 0x80
    state = [[0] * 5 for _ in range(5)]
    for offset in range(0, len(message), rate):
        for i in range(rate // 8):
            lane = int.from_bytes(message[offset + 8 * i: offset + 8 * i + 8], "little")
            state[i % 5][i // 5] ^= lane
        state = _keccak_f(state)
    return b"".join(state[i % 5][i // 5].to_bytes(8, "little") for i in range(4))


def _eip55_ok(body: str) -> bool:
    digest = keccak256(body.lower().encode()).hex()
    for char, nibble in zip(body, digest):
        if char.isalpha() and char.isupper() != (int(nibble, 16) >= 8):
            return False
    return True
