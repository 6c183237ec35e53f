#!/usr/bin/env node
// An operator SMSC built on the npm package `smpp` (node-smpp, not chogate's codec) that
// chogate binds to as a client.
//
// Usage: node smsc.js SYSTEM_ID PASSWORD SYSTEM_TYPE
//
// Listens on 127.0.0.1, port 0, and prints one line per event on stdout:
//   LISTENING <port>
//   SESSION <n>                        a connection (chogate should open exactly one)
//   BOUND <system_id> <interface_version>  bind_transceiver checked and accepted
//   ENQUIRE_LINK_RESP                  our enquire_link was answered with status 0
//   DELIVER_SM_RESP <command_status>   our USSD deliver_sm was answered (decimal status)
//   UNBIND                             chogate unbound; unbind_resp is sent back
//   CLOSED                             the connection closed after the unbind; then exit 0
//   FAIL <why>                         an expectation failed; then exit 1
// With SMSC_TLS_CERT and SMSC_TLS_KEY (PEM files) in the environment it speaks SMPP over TLS
// (node's tls), and SESSION carries the protocol: `SESSION 1 TLSv1.3`.
// It also exits when its stdin closes, so it never outlives the test that runs it.
// Driven by tests/interop.rs, with NODE_PATH pointing at the pinned `smpp` package.
'use strict';

const smpp = require('smpp');

const [expectedSystemId, expectedPassword, expectedSystemType] = process.argv.slice(2);
if (expectedSystemId === undefined || expectedPassword === undefined || expectedSystemType === undefined) {
	process.stderr.write('usage: node smsc.js SYSTEM_ID PASSWORD SYSTEM_TYPE\n');
	process.exit(2);
}

function say(line) {
	process.stdout.write(line + '\n');
}

function fail(why) {
	say('FAIL ' + why);
	process.exit(1);
}

let sessions = 0;

const fs = require('fs');
const tlsOptions = process.env.SMSC_TLS_CERT && process.env.SMSC_TLS_KEY
	? { cert: fs.readFileSync(process.env.SMSC_TLS_CERT), key: fs.readFileSync(process.env.SMSC_TLS_KEY) }
	: {};

const server = smpp.createServer(tlsOptions, function (session) {
	sessions += 1;
	const protocol = session.socket.getProtocol ? ' ' + session.socket.getProtocol() : '';
	say('SESSION ' + sessions + protocol);
	if (sessions > 1) {
		fail('a second connection: chogate reconnected, so the first session broke');
	}
	let bound = false;
	let unbound = false;

	session.on('error', function (e) {
		if (!unbound) {
			fail('session error before unbind: ' + e.message);
		}
	});

	session.on('close', function () {
		if (!unbound) {
			fail('connection closed before unbind');
		}
		say('CLOSED');
		server.close();
		process.exit(0);
	});

	// Whatever node-smpp could not map to a command.
	session.on('unknown', function (pdu) {
		fail('unknown PDU command_id=0x' + pdu.command_id.toString(16));
	});

	session.on('generic_nack', function (pdu) {
		fail('generic_nack status=' + pdu.command_status + ' seq=' + pdu.sequence_number);
	});

	for (const other of ['bind_transmitter', 'bind_receiver']) {
		session.on(other, function () {
			fail(other + ' instead of bind_transceiver');
		});
	}

	session.on('bind_transceiver', function (pdu) {
		if (bound) {
			fail('second bind_transceiver on a bound session');
		}
		const problems = [];
		if (pdu.system_id !== expectedSystemId) {
			problems.push('system_id ' + JSON.stringify(pdu.system_id));
		}
		if (pdu.password !== expectedPassword) {
			problems.push('password ' + JSON.stringify(pdu.password));
		}
		if (pdu.system_type !== expectedSystemType) {
			problems.push('system_type ' + JSON.stringify(pdu.system_type));
		}
		if (pdu.interface_version !== 0x34) {
			problems.push('interface_version 0x' + pdu.interface_version.toString(16));
		}
		if (problems.length > 0) {
			session.send(pdu.response({ command_status: smpp.ESME_RBINDFAIL }));
			fail('bad bind_transceiver: ' + problems.join(', '));
		}
		session.send(pdu.response({ system_id: 'node-smsc' }));
		bound = true;
		say('BOUND ' + pdu.system_id + ' 0x' + pdu.interface_version.toString(16));
		session.enquire_link({}, function (resp) {
			if (resp.command !== 'enquire_link_resp' || resp.command_status !== 0) {
				fail('enquire_link answered with ' + resp.command + ' status=' + resp.command_status);
			}
			say('ENQUIRE_LINK_RESP');
			sendDeliverSm(session);
		});
	});

	// chogate's keep-alive, should it come.
	session.on('enquire_link', function (pdu) {
		session.send(pdu.response());
	});

	session.on('unbind', function (pdu) {
		if (!bound) {
			fail('unbind before bind');
		}
		unbound = true;
		say('UNBIND');
		session.send(pdu.response());
	});

	// chogate's USSD screen for the subscriber: op 2 (expects input), session echoed.
	session.on('submit_sm', function (pdu) {
		const its = pdu.its_session_info ? Buffer.from(pdu.its_session_info).toString('hex') : 'none';
		say('SCREEN ' + pdu.ussd_service_op + ' ' + its);
		session.send(pdu.response({ message_id: 'u' + pdu.sequence_number }));
	});

	for (const request of ['data_sm', 'deliver_sm']) {
		session.on(request, function (pdu) {
			fail('unexpected ' + request + ' seq=' + pdu.sequence_number);
		});
	}
});

// A subscriber dials *384#: the operator hands the USSD dialogue's first PDU to chogate.
function sendDeliverSm(session) {
	const options = {
		service_type: 'USSD',
		source_addr_ton: 1,
		source_addr_npi: 1,
		source_addr: '84912345678',
		dest_addr_ton: 0,
		dest_addr_npi: 0,
		destination_addr: '384',
		data_coding: 0,
		short_message: '*384#',
		ussd_service_op: 1,
		its_session_info: Buffer.from([0x12, 0x00]),
	};
	session.deliver_sm(options, function (resp) {
		if (resp.command !== 'deliver_sm_resp') {
			fail('deliver_sm answered with ' + resp.command + ' status=' + resp.command_status);
		}
		say('DELIVER_SM_RESP ' + resp.command_status);
	});
}

server.on('error', function (e) {
	fail('server error: ' + e.message);
});

server.listen(0, '127.0.0.1', function () {
	say('LISTENING ' + server.address().port);
});

// The test holds our stdin open; when it goes (test done, or crashed), so do we.
process.stdin.on('data', function () {});
process.stdin.on('end', function () {
	process.exit(0);
});
process.stdin.resume();
