#!/usr/bin/env python3
"""A USSD centre built on smpplib (not chogate's codec) that binds to chogate's SMPP server.

Usage: smpplib_peer.py HOST PORT SYSTEM_ID PASSWORD SCENARIO

Scenarios:
  bind_ok       bind_transceiver succeeds, enquire_link is answered, unbind gets unbind_resp
                and chogate then closes the connection.
  bad_password  bind_transceiver is refused with ESME_RINVPASWD (0x0E), which smpplib raises
                as PDUError carrying that status; chogate then closes the connection.
  submit        after binding, a USSD submit_sm (a subscriber dialling *384#) sent with
                smpplib's send_message is answered on the same bind with status 0 and the
                submit's sequence number, then chogate's first screen arrives as a deliver_sm
                with ussd_service_op 2 and its_session_info echoed; smpplib answers it; the
                bind stays usable and unbinds cleanly.

With CHOGATE_TLS_CA (a PEM file) in the environment it connects in TLS through Python's ssl
module (OpenSSL, not rustls), checking chogate's certificate against that CA and the name
`localhost`, and prints `TLS <version>` after connecting.

Prints one line per step; the last line is "PASS <scenario>" (exit 0) or "FAIL <why>" (exit 1).
Driven by tests/interop.rs, which runs it with PYTHONPATH pointing at a pinned smpplib.
"""

import logging
import os
import ssl
import sys
import time

import smpplib
import smpplib.client
import smpplib.consts
import smpplib.exceptions
import smpplib.smpp

ESME_ROK = 0x00
ESME_RINVPASWD = 0x0E
ESME_RX_T_APPN = 0x64
EXPECTED_SYSTEM_ID = b"chogate"
# Per-read socket timeout and bound on each wait for a PDU: a safety net against hangs, never
# a pause. Shorter than the Rust side's PATIENCE, so that a hang is reported from here.
SOCKET_TIMEOUT = 5


class Failed(Exception):
    pass


def step(text):
    print(text, flush=True)


def expect(cond, why):
    if not cond:
        raise Failed(why)


class CheckedTls:
    """An ssl context for smpplib, which wraps its socket without a server name: this one
    gives it, so that the certificate's name is checked as well as its chain."""

    def __init__(self, cafile):
        self.context = ssl.create_default_context(cafile=cafile)

    def wrap_socket(self, sock):
        return self.context.wrap_socket(sock, server_hostname="localhost")


def connect(client):
    client.connect()
    step("CONNECTED")
    if isinstance(client._socket, ssl.SSLSocket):
        step("TLS %s" % client._socket.version())


def read_response(client, sequence, command):
    """The response to our request `sequence`; chogate's own enquire_links are answered."""
    deadline = time.monotonic() + SOCKET_TIMEOUT
    while time.monotonic() < deadline:
        pdu = client.read_pdu()
        if pdu.command == "enquire_link":
            resp = smpplib.smpp.make_pdu("enquire_link_resp", client=client, sequence=pdu.sequence)
            client.send_pdu(resp)
            step("ANSWERED_ENQUIRE_LINK seq=%d" % pdu.sequence)
            continue
        expect(
            pdu.command == command,
            "expected %s, got %s status=0x%08x seq=%d" % (command, pdu.command, pdu.status, pdu.sequence),
        )
        expect(pdu.sequence == sequence, "%s seq=%d, expected %d" % (command, pdu.sequence, sequence))
        return pdu
    raise Failed("no %s within %ss" % (command, SOCKET_TIMEOUT))


def expect_closed_by_server(client):
    """After an unbind or a refused bind, chogate closes the connection."""
    try:
        pdu = client.read_pdu()
    except smpplib.exceptions.ConnectionError:
        step("CLOSED_BY_SERVER")
        return
    raise Failed("expected the server to close, got %s seq=%d" % (pdu.command, pdu.sequence))


def bind(client, system_id, password):
    resp = client.bind_transceiver(system_id=system_id, password=password)
    expect(resp.command == "bind_transceiver_resp", "bind answered with %s" % resp.command)
    expect(resp.status == ESME_ROK, "bind status 0x%08x" % resp.status)
    expect(resp.system_id == EXPECTED_SYSTEM_ID, "bind_resp system_id %r" % resp.system_id)
    expect(
        resp.sc_interface_version == 0x34, "bind_resp sc_interface_version %r" % resp.sc_interface_version
    )
    expect(
        client.state == smpplib.consts.SMPP_CLIENT_STATE_BOUND_TRX,
        "smpplib state %r after bind" % client.state,
    )
    step(
        "BOUND seq=%d system_id=%s sc_interface_version=0x%02x"
        % (resp.sequence, resp.system_id.decode(), resp.sc_interface_version)
    )


def enquire_link(client):
    req = smpplib.smpp.make_pdu("enquire_link", client=client)
    client.send_pdu(req)
    resp = read_response(client, req.sequence, "enquire_link_resp")
    expect(resp.status == ESME_ROK, "enquire_link_resp status 0x%08x" % resp.status)
    step("ENQUIRE_LINK_RESP seq=%d status=0x%08x" % (resp.sequence, resp.status))


def unbind(client):
    sequence = client.sequence + 1
    resp = client.unbind()
    expect(resp.command == "unbind_resp", "unbind answered with %s" % resp.command)
    expect(resp.sequence == sequence, "unbind_resp seq=%d, expected %d" % (resp.sequence, sequence))
    expect(resp.status == ESME_ROK, "unbind_resp status 0x%08x" % resp.status)
    expect(
        client.state == smpplib.consts.SMPP_CLIENT_STATE_OPEN, "smpplib state %r after unbind" % client.state
    )
    step("UNBIND_RESP seq=%d status=0x%08x" % (resp.sequence, resp.status))
    expect_closed_by_server(client)


def scenario_bind_ok(client, system_id, password):
    bind(client, system_id, password)
    enquire_link(client)
    unbind(client)


def scenario_bad_password(client, system_id, password):
    try:
        resp = client.bind_transceiver(system_id=system_id, password=password)
    except smpplib.exceptions.PDUError as e:
        expect(len(e.args) > 1, "PDUError without a status: %r" % (e.args,))
        status = e.args[1]
        expect(status == ESME_RINVPASWD, "bind refused with 0x%08x, expected 0x%08x" % (status, ESME_RINVPASWD))
        expect(
            client.state == smpplib.consts.SMPP_CLIENT_STATE_OPEN, "smpplib state %r after refusal" % client.state
        )
        step("BIND_REFUSED status=0x%08x (%s)" % (status, e.args[0]))
        expect_closed_by_server(client)
        return
    raise Failed("bind with a wrong password succeeded: %s status=0x%08x" % (resp.command, resp.status))


def scenario_submit(client, system_id, password):
    # smpplib 2.2.4 defines ussd_service_op (0x0501) for submit_sm but not for deliver_sm,
    # where SMPP 3.4 allows it as well (the USSD screens of a USSD centre's peer come in
    # deliver_sm): without this its parser stops with KeyError on chogate's screen.
    smpplib.command.DeliverSM.params.setdefault("ussd_service_op", smpplib.command.Param(type=int, size=1))
    bind(client, system_id, password)
    sent = []
    errors = []
    screens = []
    client.set_message_received_handler(lambda pdu, **kwargs: screens.append(pdu))
    # smpplib's own dispatch: read_once() hands a PDU with a non-zero status to the error
    # handler (which raises PDUError by default), then a submit_sm_resp to the sent handler.
    client.set_error_pdu_handler(lambda pdu: errors.append(pdu))
    client.set_message_sent_handler(lambda pdu, **kwargs: sent.append(pdu))
    submit = client.send_message(
        service_type="USSD",
        source_addr_ton=smpplib.consts.SMPP_TON_INTL,
        source_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
        source_addr="84912345678",
        dest_addr_ton=smpplib.consts.SMPP_TON_UNK,
        dest_addr_npi=smpplib.consts.SMPP_NPI_UNK,
        destination_addr="384",
        data_coding=smpplib.consts.SMPP_ENCODING_DEFAULT,
        short_message=b"*384#",
        ussd_service_op=1,
        its_session_info=0x1200,
    )
    step("SUBMIT_SM seq=%d" % submit.sequence)
    deadline = time.monotonic() + SOCKET_TIMEOUT
    while (not sent or not screens) and time.monotonic() < deadline:
        # chogate's enquire_links are answered by read_once itself.
        client.read_once(auto_send_enquire_link=False)
    expect(len(sent) == 1, "no submit_sm_resp within %ss" % SOCKET_TIMEOUT)
    resp = sent[0]
    expect(resp.command == "submit_sm_resp", "message_sent_handler got %s" % resp.command)
    expect(
        resp.sequence == submit.sequence, "submit_sm_resp seq=%d, expected %d" % (resp.sequence, submit.sequence)
    )
    expect(resp.status == 0, "submit_sm_resp status 0x%08x, expected 0" % resp.status)
    expect(errors == [], "error_pdu_handler saw %r" % [(p.command, p.status) for p in errors])
    step("SUBMIT_SM_RESP seq=%d status=0x%08x" % (resp.sequence, resp.status))
    expect(len(screens) == 1, "no screen within %ss" % SOCKET_TIMEOUT)
    screen = screens[0]
    expect(screen.command == "deliver_sm", "screen came as %s" % screen.command)
    op = screen.ussd_service_op
    op = op if isinstance(op, int) else int.from_bytes(bytes(op), "big")
    its = screen.its_session_info
    its = its if isinstance(its, int) else int.from_bytes(bytes(its), "big")
    step("SCREEN op=%d its_session_info=0x%04x data_coding=%d" % (op, its, screen.data_coding))
    # The bind survives an error response: still in step, still unbinds cleanly.
    enquire_link(client)
    unbind(client)


SCENARIOS = {
    "bind_ok": scenario_bind_ok,
    "bad_password": scenario_bad_password,
    "submit": scenario_submit,
}


def main(argv):
    if len(argv) != 6 or argv[5] not in SCENARIOS:
        print("usage: %s HOST PORT SYSTEM_ID PASSWORD {%s}" % (argv[0], "|".join(SCENARIOS)), file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    host, port, system_id, password, scenario = argv[1], int(argv[2]), argv[3], argv[4], argv[5]
    # allow_unknown_opt_params=False: smpplib's strict mode, an unknown TLV from chogate fails.
    cafile = os.environ.get("CHOGATE_TLS_CA")
    client = smpplib.client.Client(
        host,
        port,
        timeout=SOCKET_TIMEOUT,
        allow_unknown_opt_params=False,
        ssl_context=CheckedTls(cafile) if cafile else None,
    )
    try:
        connect(client)
        SCENARIOS[scenario](client, system_id, password)
    except Failed as e:
        step("FAIL %s" % e)
        return 1
    except Exception as e:  # smpplib errors, socket errors: all mean the scenario failed
        step("FAIL %s: %s" % (type(e).__name__, e))
        return 1
    finally:
        client.disconnect()
    step("PASS %s" % scenario)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
