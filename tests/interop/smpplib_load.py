#!/usr/bin/env python3
"""N concurrent USSD subscribers through one smpplib bind (an SMPP implementation that is
not chogate's), each registering itself through chogate's menus.

Usage: smpplib_load.py HOST PORT SYSTEM_ID PASSWORD N MSISDN_BASE

Every subscriber dials *384# (submit_sm, ussd_service_op 1, its_session_info = its own
session number), then answers each screen with the next input of the registration script;
all dialogues are open at once. Checks on every screen: it comes as a deliver_sm to the
subscriber's number, ussd_service_op is 2 while inputs remain and 17 on the last screen,
its_session_info echoes the session number with the end bit set exactly on the last screen,
and every submit_sm_resp has status 0. Prints one line `RESULT ...` and exits 0 only when
all N dialogues completed with no error.
"""

import sys
import time

import smpplib
import smpplib.client
import smpplib.command
import smpplib.consts

# The commune by name, the first entry of its village list (the one other subscribers may
# have created already, or "another village"), a village name (or, when the village was
# picked, the household's name), a name (or a wrong key on the confirmation), yes.
SCRIPT = ["doan ket", "1", "1", "Ban Chu", "Hoang Van A", "1"]
TIMEOUT = 120.0


def main(argv):
    host, port, system_id, password, n, base = argv[1], int(argv[2]), argv[3], argv[4], int(argv[5]), int(argv[6])
    # smpplib 2.2.4 defines ussd_service_op for submit_sm but not for deliver_sm, where SMPP
    # 3.4 allows it too.
    smpplib.command.DeliverSM.params.setdefault("ussd_service_op", smpplib.command.Param(type=int, size=1))
    client = smpplib.client.Client(host, port, timeout=30, allow_unknown_opt_params=True)
    errors = {}
    state = {}  # msisdn -> [session, inputs sent]
    done = set()
    resp_status = {}

    def error(kind):
        errors[kind] = errors.get(kind, 0) + 1

    def send(msisdn, text, op, session):
        client.send_message(
            service_type="USSD",
            source_addr_ton=smpplib.consts.SMPP_TON_INTL,
            source_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
            source_addr=msisdn,
            dest_addr_ton=smpplib.consts.SMPP_TON_UNK,
            dest_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
            destination_addr="*384#",
            data_coding=smpplib.consts.SMPP_ENCODING_DEFAULT,
            short_message=text.encode("ascii"),
            ussd_service_op=op,
            its_session_info=session << 8,
        )

    def on_sent(pdu, **kwargs):
        resp_status[pdu.status] = resp_status.get(pdu.status, 0) + 1
        if pdu.status != 0:
            error("submit_sm_resp status 0x%x" % pdu.status)

    screens = [0]

    def on_screen(pdu, **kwargs):
        screens[0] += 1
        if screens[0] % 200 == 0:
            print("SCREENS %d completed %d" % (screens[0], len(done)), flush=True)
        msisdn = pdu.destination_addr.decode() if isinstance(pdu.destination_addr, bytes) else pdu.destination_addr
        if msisdn not in state:
            error("screen for an unknown number")
            return
        session, sent = state[msisdn]
        op = pdu.ussd_service_op
        its = pdu.its_session_info
        last = sent == len(SCRIPT)
        if its is None or its >> 8 != session:
            error("its_session_info not echoed")
        elif bool(its & 1) != last:
            error("end bit wrong")
        if op != (17 if last else 2):
            error("wrong op %s after %d inputs" % (op, sent))
            done.add(msisdn)
            return
        if last:
            done.add(msisdn)
            return
        state[msisdn][1] = sent + 1
        send(msisdn, SCRIPT[sent], 18, session)

    client.set_message_sent_handler(on_sent)
    client.set_message_received_handler(on_screen)
    client.set_error_pdu_handler(lambda pdu: None)
    client.connect()
    client.bind_transceiver(system_id=system_id, password=password)
    started = time.monotonic()
    for i in range(n):
        msisdn = "%d" % (base + i)
        state[msisdn] = [i % 256, 0]
        send(msisdn, "*384#", 1, i % 256)
    print("DIALLED %d" % n, flush=True)
    deadline = started + TIMEOUT
    while len(done) < n and time.monotonic() < deadline:
        client.read_once(auto_send_enquire_link=False)
    elapsed = time.monotonic() - started
    completed = len(done)
    try:
        client.unbind()
        client.disconnect()
    except Exception:  # noqa: BLE001 - the result is what matters here
        pass
    ok = completed == n and not errors
    print(
        "RESULT completed=%d of %d in %.2fs screens=%d errors=%s"
        % (completed, n, elapsed, sum(s[1] for s in state.values()) + completed, errors or "{}")
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
