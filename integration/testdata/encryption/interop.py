"""Reads and writes streamer's encrypted records with PyPI tink alone.

The wire format is docs/ENCRYPTION.md's: fields encrypted with tink
(AES-256-GCM, or AES-SIV for deterministic fields), associated data the
field's path, base64 in JSON; each wrapped data keyset (a binary tink
EncryptedKeyset, wrapped by the key-encryption key) in a record header.

  interop.py produce BROKERS TOPIC KEK.json DET.json N
      writes N signups {user, email, name}: name randomized, email
      deterministic, keyed by user
  interop.py consume BROKERS TOPIC KEK.json N
      reads N records, decrypts name and email, prints one JSON object a
      line: the decrypted value, plus the email's ciphertext as "email_ct"
"""

import base64
import io
import json
import sys
import uuid

import tink
from confluent_kafka import Consumer, Producer
from tink import aead, cleartext_keyset_handle, daead

aead.register()
daead.register()


def kek_of(path):
    with open(path) as f:
        handle = cleartext_keyset_handle.read(tink.JsonKeysetReader(f.read()))
    return handle.primitive(aead.Aead)


def wrapped(handle, kek):
    buf = io.BytesIO()
    handle.write(tink.BinaryKeysetWriter(buf), kek)
    return buf.getvalue()


def produce(brokers, topic, kek_path, det_path, n):
    kek = kek_of(kek_path)
    with open(det_path) as f:
        det_handle = tink.read_keyset_handle(tink.JsonKeysetReader(f.read()), kek)
    det = det_handle.primitive(daead.DeterministicAead)
    dek_handle = tink.new_keyset_handle(aead.aead_key_templates.AES256_GCM)
    dek = dek_handle.primitive(aead.Aead)
    headers = [
        ("streamer.enc.dek", wrapped(dek_handle, kek)),
        ("streamer.enc.dek.det", wrapped(det_handle, kek)),
    ]
    p = Producer({"bootstrap.servers": brokers})
    for i in range(n):
        user = "py%d" % i
        email = "python%03d@mail.example" % i
        name = "Py Thon%03d" % i
        value = {
            "user": user,
            "email": base64.b64encode(det.encrypt_deterministically(email.encode(), b"email")).decode(),
            "name": base64.b64encode(dek.encrypt(name.encode(), b"name")).decode(),
        }
        p.produce(topic, key=user.encode(), value=json.dumps(value).encode(), headers=headers)
    p.flush(30)


def consume(brokers, topic, kek_path, n):
    kek = kek_of(kek_path)
    c = Consumer({
        "bootstrap.servers": brokers,
        "group.id": "interop-" + uuid.uuid4().hex,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
    })
    c.subscribe([topic])
    got, idle = 0, 0
    while got < n and idle < 60:
        msg = c.poll(1.0)
        if msg is None:
            idle += 1
            continue
        if msg.error():
            raise SystemExit(str(msg.error()))
        h = dict(msg.headers() or [])
        dek = tink.read_keyset_handle(tink.BinaryKeysetReader(h["streamer.enc.dek"]), kek).primitive(aead.Aead)
        det = tink.read_keyset_handle(tink.BinaryKeysetReader(h["streamer.enc.dek.det"]), kek).primitive(daead.DeterministicAead)
        v = json.loads(msg.value())
        v["email_ct"] = v["email"]
        v["email"] = det.decrypt_deterministically(base64.b64decode(v["email"]), b"email").decode()
        v["name"] = dek.decrypt(base64.b64decode(v["name"]), b"name").decode()
        print(json.dumps(v), flush=True)
        got += 1
    c.close()
    if got < n:
        raise SystemExit("read %d records of %d" % (got, n))


if __name__ == "__main__":
    if sys.argv[1] == "produce":
        produce(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]))
    else:
        consume(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
