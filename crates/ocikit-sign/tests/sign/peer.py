#!/usr/bin/env python3
"""An independent cosign key-file and signature peer for ocikit-sign's tests: OpenSSL (through
Python's `cryptography`) for P-256 keys and ECDSA, hashlib's scrypt, libsodium (through PyNaCl)
for NaCl secretbox. Nothing here comes from ocikit.

    peer.py generate KEY PUB PASSFILE LABEL LOG_N   write an encrypted private key and its public key
    peer.py sign KEY PASSFILE PAYLOAD               decrypt KEY, print base64 of an ECDSA signature of PAYLOAD
    peer.py verify PUB PAYLOAD SIGFILE              exit 0 when SIGFILE (base64) verifies, 1 otherwise
"""

import base64
import hashlib
import json
import os
import sys

import nacl.exceptions
import nacl.secret
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


def armor(label, data):
    text = base64.b64encode(data).decode()
    lines = [text[i:i + 64] for i in range(0, len(text), 64)]
    return "-----BEGIN %s-----\n%s\n-----END %s-----\n" % (label, "\n".join(lines), label)


def unarmor(text):
    lines = text.strip().splitlines()
    if not lines[0].startswith("-----BEGIN ") or not lines[-1].startswith("-----END "):
        raise ValueError("not a PEM block")
    return lines[0][len("-----BEGIN "):-len("-----")], base64.b64decode("".join(lines[1:-1]))


def encrypt(der, passphrase, log_n):
    """go-securesystemslib's `encrypted` JSON, fields in its order."""
    salt = os.urandom(32)
    n = 1 << log_n
    box_key = hashlib.scrypt(passphrase, salt=salt, n=n, r=8, p=1, maxmem=512 << 20, dklen=32)
    nonce = os.urandom(24)
    sealed = nacl.secret.SecretBox(box_key).encrypt(der, nonce).ciphertext
    body = {
        "kdf": {"name": "scrypt", "params": {"N": n, "r": 8, "p": 1},
                "salt": base64.b64encode(salt).decode()},
        "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
        "ciphertext": base64.b64encode(sealed).decode(),
    }
    return json.dumps(body, separators=(",", ":")).encode()


def decrypt(body, passphrase):
    data = json.loads(body)
    assert data["kdf"]["name"] == "scrypt" and data["cipher"]["name"] == "nacl/secretbox"
    params = data["kdf"]["params"]
    assert (params["r"], params["p"]) == (8, 1) and params["N"] in (1 << 15, 1 << 16, 1 << 17)
    salt = base64.b64decode(data["kdf"]["salt"])
    box_key = hashlib.scrypt(passphrase, salt=salt, n=params["N"], r=8, p=1,
                             maxmem=512 << 20, dklen=32)
    nonce = base64.b64decode(data["cipher"]["nonce"])
    return nacl.secret.SecretBox(box_key).decrypt(base64.b64decode(data["ciphertext"]), nonce)


def pkcs8(key):
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_pem(key):
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write(path, data):
    with open(path, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def main(argv):
    command = argv[1]
    if command == "generate":
        key_path, pub_path, pass_path, label, log_n = argv[2:7]
        key = ec.generate_private_key(ec.SECP256R1())
        write(key_path, armor(label, encrypt(pkcs8(key), read(pass_path), int(log_n))))
        write(pub_path, public_pem(key))
    elif command == "sign":
        key_path, pass_path, payload_path = argv[2:5]
        label, body = unarmor(read(key_path).decode())
        assert label in ("ENCRYPTED COSIGN PRIVATE KEY", "ENCRYPTED SIGSTORE PRIVATE KEY"), label
        try:
            der = decrypt(body, read(pass_path))
        except nacl.exceptions.CryptoError:
            print("decryption failed", file=sys.stderr)
            return 2
        key = serialization.load_der_private_key(der, None)
        assert isinstance(key.curve, ec.SECP256R1), key.curve.name
        signature = key.sign(read(payload_path), ec.ECDSA(hashes.SHA256()))
        print(base64.b64encode(signature).decode())
    elif command == "verify":
        pub_path, payload_path, sig_path = argv[2:5]
        key = serialization.load_pem_public_key(read(pub_path))
        assert isinstance(key.curve, ec.SECP256R1), key.curve.name
        try:
            key.verify(base64.b64decode(read(sig_path).strip(), validate=True),
                       read(payload_path), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            print("signature does not verify", file=sys.stderr)
            return 1
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
