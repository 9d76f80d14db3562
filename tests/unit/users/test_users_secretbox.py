"""API-key secrets at rest: AES-GCM under a server-side keyring."""
import pytest

from services.users.secretbox import KeyringError, SecretBox, generate_keyring_entry

K1, K2 = generate_keyring_entry("k1"), generate_keyring_entry("k2")


def test_round_trip_and_the_ciphertext_does_not_contain_the_secret():
    box = SecretBox(K1)
    sealed = box.seal("my-secret-" * 6, "key-1:user-1")
    assert b"my-secret" not in sealed.ciphertext
    assert box.open(sealed, "key-1:user-1") == "my-secret-" * 6


def test_two_seals_of_one_secret_differ():
    box = SecretBox(K1)
    assert box.seal("s", "c").ciphertext != box.seal("s", "c").ciphertext


def test_ciphertext_moved_to_another_row_does_not_decrypt():
    box = SecretBox(K1)
    sealed = box.seal("secret", "key-1:user-1")
    with pytest.raises(KeyringError):
        box.open(sealed, "key-2:user-2")


def test_another_server_key_cannot_decrypt():
    sealed = SecretBox(K1).seal("secret", "c")
    other = SecretBox(generate_keyring_entry("k1"))
    with pytest.raises(KeyringError):
        other.open(sealed, "c")


def test_rotation_new_key_encrypts_old_key_still_decrypts():
    old = SecretBox(K1).seal("secret", "c")
    rotated = SecretBox(f"{K2},{K1}")
    assert rotated.active_key_id == "k2"
    assert rotated.seal("x", "c").key_id == "k2"
    assert rotated.open(old, "c") == "secret"


@pytest.mark.parametrize("keyring", ["", "k1", "k1:short", "bad id!:" + K1.split(":")[1],
                                     f"{K1},{K1}"])
def test_bad_keyrings_are_refused(keyring):
    with pytest.raises(KeyringError):
        SecretBox(keyring)
