#!/usr/bin/env python3
"""Writes the raw SMPP 3.4 seed PDUs in fuzz/seeds/ (run from anywhere)."""
import os
import struct

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")


def pdu(command_id, seq, body, status=0):
    return struct.pack(">IIII", 16 + len(body), command_id, status, seq) + body


def cstr(s):
    return s.encode() + b"\0"


def tlv(tag, value):
    return struct.pack(">HH", tag, len(value)) + value


def sm_body(service_type, src, dst, short_message, tlvs):
    return (
        cstr(service_type)
        + bytes([1, 1]) + cstr(src)            # source ton, npi, addr
        + bytes([0, 1]) + cstr(dst)            # dest ton, npi, addr
        + bytes([0, 0, 0])                     # esm_class, protocol_id, priority_flag
        + cstr("") + cstr("")                  # schedule_delivery_time, validity_period
        + bytes([1, 0, 0, 0])                  # registered_delivery, replace_if_present, data_coding, sm_default_msg_id
        + bytes([len(short_message)]) + short_message
        + b"".join(tlvs)
    )


SEEDS = {
    "bind_transceiver.bin": pdu(0x09, 1, cstr("chogate") + cstr("secret") + cstr("USSD") + bytes([0x34, 1, 1]) + cstr("")),
    "submit_sm_tlvs.bin": pdu(0x04, 2, sm_body(
        "", "84912345678", "84987654321", b"Don hang #1024: 2 bao gao",
        [tlv(0x0204, b"\x00\x2a"), tlv(0x0424, b""), tlv(0x1400, b"\xde\xad")],
    )),
    "enquire_link.bin": pdu(0x15, 3, b""),
    "deliver_sm_ussd.bin": pdu(0x05, 4, sm_body(
        "USSD", "84912345678", "*384#", b"*384#",
        [tlv(0x0501, b"\x01"), tlv(0x1383, b"\x07\x00")],
    )),
}

for name, data in SEEDS.items():
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)
    print(name, data.hex())
