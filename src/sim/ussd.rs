//! The subscriber's side of USSD over SMPP: the PDUs a USSD centre sends for a subscriber
//! (dial, answer, abort) and the screens chogate sends back, decoded and checked.

use bytes::Bytes;
use tokio::time::Instant;

use crate::smpp::pdu::{Address, Body, Pdu, Sm, Tlvs, tag};
use crate::text::{USSD_GSM_MAX, USSD_UCS2_MAX, decode_short_message, encode_text};

/// `ussd_service_op` values (SMPP 3.4 section 5.3.2.44, plus the vendor user abort).
pub mod op {
    /// PSSR indication: the subscriber dialled, a new dialogue.
    pub const PSSR_INDICATION: u8 = 1;
    /// USSR request: a menu that expects an answer.
    pub const USSR_REQUEST: u8 = 2;
    /// PSSR response: the final screen, the dialogue ends.
    pub const PSSR_RESPONSE: u8 = 17;
    /// USSR confirm: the subscriber's answer.
    pub const USSR_CONFIRM: u8 = 18;
    /// Vendor-specific: the subscriber aborted the dialogue.
    pub const USER_ABORT: u8 = 0x81;
}

/// `short_message` holds at most this many octets; longer text goes in `message_payload`.
const SHORT_MESSAGE_MAX: usize = 254;

/// One subscriber action (dial, answer, abort): what its PDU carries.
#[derive(Debug, Clone, Copy)]
pub struct Action<'a> {
    /// The subscriber's MSISDN (source address, TON 1 NPI 1).
    pub msisdn: &'a str,
    /// The dial string that opened the dialogue (destination address).
    pub dial: &'a str,
    /// `ussd_service_op`.
    pub op: u8,
    /// Session number (octet 1 of `its_session_info`).
    pub session: u8,
    /// The text: the dial string, an answer, or nothing for an abort.
    pub text: &'a str,
}

impl Action<'_> {
    /// The `deliver_sm` a USSD centre sends to chogate for this subscriber action. The text
    /// is GSM when it can be, UCS2 otherwise; text over 254 octets goes in
    /// `message_payload`.
    pub fn to_body(&self) -> Body {
        let encoded = encode_text(self.text, true);
        let mut tlvs = Tlvs::default();
        tlvs.set(tag::USSD_SERVICE_OP, vec![self.op]);
        let end = u8::from(self.op == op::USER_ABORT);
        tlvs.set(tag::ITS_SESSION_INFO, vec![self.session, end]);
        let short_message = if encoded.bytes.len() > SHORT_MESSAGE_MAX {
            tlvs.set(tag::MESSAGE_PAYLOAD, encoded.bytes);
            Bytes::new()
        } else {
            Bytes::from(encoded.bytes)
        };
        Body::DeliverSm(Box::new(Sm {
            service_type: "USSD".to_owned(),
            source: Address::international(self.msisdn),
            dest: Address { ton: 0, npi: 1, addr: self.dial.to_owned() },
            esm_class: 0,
            data_coding: encoded.encoding.data_coding(),
            short_message,
            tlvs,
            ..Sm::default()
        }))
    }
}

/// A screen chogate sent to a subscriber, decoded.
#[derive(Debug, Clone)]
pub struct Screen {
    /// The subscriber (destination address).
    pub msisdn: String,
    /// The PDU it came in (`deliver_sm`, `submit_sm`, `data_sm`).
    pub command: &'static str,
    /// `ussd_service_op`, when present.
    pub op: Option<u8>,
    /// `its_session_info`, when present and two octets long.
    pub session_info: Option<[u8; 2]>,
    /// `data_coding`.
    pub data_coding: u8,
    /// Octets of the text as sent.
    pub octets: usize,
    /// The text, decoded by `data_coding`.
    pub text: String,
    /// When it arrived (step latencies end here).
    pub received: Instant,
}

impl Screen {
    /// Decodes a message PDU (`deliver_sm`, `submit_sm`, `data_sm`); `None` for any other.
    pub fn from_pdu(pdu: &Pdu, received: Instant) -> Option<Screen> {
        let (command, dest, data_coding, tlvs, payload) = match &pdu.body {
            Body::DeliverSm(sm) => ("deliver_sm", &sm.dest, sm.data_coding, &sm.tlvs, sm.payload().clone()),
            Body::SubmitSm(sm) => ("submit_sm", &sm.dest, sm.data_coding, &sm.tlvs, sm.payload().clone()),
            Body::DataSm(d) => (
                "data_sm",
                &d.dest,
                d.data_coding,
                &d.tlvs,
                d.tlvs.get(tag::MESSAGE_PAYLOAD).cloned().unwrap_or_default(),
            ),
            _ => return None,
        };
        let session_info = tlvs.get(tag::ITS_SESSION_INFO).and_then(|v| match v.as_ref() {
            [a, b] => Some([*a, *b]),
            _ => None,
        });
        Some(Screen {
            msisdn: dest.addr.clone(),
            command,
            op: tlvs.get_u8(tag::USSD_SERVICE_OP),
            session_info,
            data_coding,
            octets: payload.len(),
            text: decode_short_message(data_coding, &payload),
            received,
        })
    }

    /// Whether the screen ends the dialogue (`ussd_service_op` 17).
    pub fn is_final(&self) -> bool {
        self.op == Some(op::PSSR_RESPONSE)
    }

    /// Whether the screen expects an answer (`ussd_service_op` 2).
    pub fn expects_input(&self) -> bool {
        self.op == Some(op::USSR_REQUEST)
    }

    /// The echoed session number (octet 1 of `its_session_info`).
    pub fn session_number(&self) -> Option<u8> {
        self.session_info.map(|s| s[0])
    }

    /// Whether the end-of-dialogue bit (octet 2, bit 0) is set.
    pub fn end_bit(&self) -> bool {
        self.session_info.is_some_and(|s| s[1] & 1 == 1)
    }

    /// The encoding and length against one screen's room: `[UCS2 64/80]`, `[GSM 120/182]`.
    pub fn encoding_line(&self) -> String {
        match self.data_coding {
            0x00 => format!("[GSM {}/{}]", self.octets, USSD_GSM_MAX),
            0x08 => format!("[UCS2 {}/{}]", self.octets / 2, USSD_UCS2_MAX),
            dc => format!("[data_coding 0x{dc:02X} {} octets]", self.octets),
        }
    }

    /// The text in a box like a phone's display, wrapped at `width` characters, followed by
    /// the encoding line.
    pub fn framed(&self, width: usize) -> String {
        let lines = wrap(&self.text, width.max(8));
        let inner = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0).max(width.min(20));
        let mut out = String::new();
        out.push('┌');
        out.extend(std::iter::repeat_n('─', inner + 2));
        out.push_str("┐\n");
        for line in &lines {
            let pad = inner - line.chars().count();
            out.push_str("│ ");
            out.push_str(line);
            out.extend(std::iter::repeat_n(' ', pad));
            out.push_str(" │\n");
        }
        out.push('└');
        out.extend(std::iter::repeat_n('─', inner + 2));
        out.push_str("┘\n");
        out.push_str(&self.encoding_line());
        out
    }
}

/// Word-wraps `text` at `width` characters; its own line breaks are kept, words longer than
/// a line are cut.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for para in text.split('\n') {
        let para = para.trim_end_matches('\r');
        let mut line = String::new();
        let mut len = 0;
        for word in para.split(' ') {
            let mut word: Vec<char> = word.chars().collect();
            // The word (and the space before it) does not fit: start a new line.
            if len > 0 && len + 1 + word.len() > width {
                lines.push(std::mem::take(&mut line));
                len = 0;
            }
            if len > 0 {
                line.push(' ');
                len += 1;
            }
            while word.len() > width - len {
                let rest = word.split_off(width - len);
                line.extend(word);
                lines.push(std::mem::take(&mut line));
                len = 0;
                word = rest;
            }
            len += word.len();
            line.extend(word);
        }
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::{Encoding, ucs2_encode};

    fn screen_pdu(body: Body) -> Pdu {
        Pdu::new(3, body)
    }

    fn reply(text: &str, op: u8, session: [u8; 2]) -> Body {
        let e = encode_text(text, true);
        let mut tlvs = Tlvs::default();
        tlvs.set(tag::USSD_SERVICE_OP, vec![op]);
        tlvs.set(tag::ITS_SESSION_INFO, session.to_vec());
        Body::DeliverSm(Box::new(Sm {
            service_type: "USSD".into(),
            source: Address { ton: 0, npi: 1, addr: "*384#".into() },
            dest: Address::international("84912345678"),
            data_coding: e.encoding.data_coding(),
            short_message: e.bytes.into(),
            tlvs,
            ..Sm::default()
        }))
    }

    #[test]
    fn dial_should_carry_the_ussd_fields() {
        let body = Action {
            msisdn: "84912345678",
            dial: "*384#",
            op: op::PSSR_INDICATION,
            session: 7,
            text: "*384#",
        }
        .to_body();
        let Body::DeliverSm(sm) = body else { panic!("not a deliver_sm") };
        assert_eq!(sm.service_type, "USSD");
        assert_eq!((sm.source.ton, sm.source.npi, sm.source.addr.as_str()), (1, 1, "84912345678"));
        assert_eq!(sm.dest.addr, "*384#");
        assert_eq!((sm.esm_class, sm.data_coding), (0, 0));
        assert_eq!(&sm.short_message[..], b"*384#");
        assert_eq!(sm.tlvs.get_u8(tag::USSD_SERVICE_OP), Some(1));
        assert_eq!(sm.tlvs.get(tag::ITS_SESSION_INFO).map(|v| v.to_vec()), Some(vec![7, 0]));
    }

    #[test]
    fn vietnamese_answer_should_go_as_ucs2_and_abort_should_set_the_end_bit() {
        let body =
            Action {
                msisdn: "8491", dial: "*384#", op: op::USSR_CONFIRM, session: 1, text: "Hoàng Văn Ấ"
            }
            .to_body();
        let Body::DeliverSm(sm) = body else { panic!() };
        assert_eq!(sm.data_coding, Encoding::Ucs2.data_coding());
        assert_eq!(sm.short_message.to_vec(), ucs2_encode("Hoàng Văn Ấ"));
        let body =
            Action { msisdn: "8491", dial: "*384#", op: op::USER_ABORT, session: 9, text: "" }.to_body();
        let Body::DeliverSm(sm) = body else { panic!() };
        assert_eq!(sm.tlvs.get(tag::ITS_SESSION_INFO).map(|v| v.to_vec()), Some(vec![9, 1]));
    }

    #[test]
    fn long_answer_should_move_to_message_payload() {
        let text = "x".repeat(300);
        let body =
            Action { msisdn: "8491", dial: "*384#", op: op::USSR_CONFIRM, session: 1, text: &text }.to_body();
        let Body::DeliverSm(sm) = body else { panic!() };
        assert!(sm.short_message.is_empty());
        assert_eq!(sm.payload().len(), 300);
        assert!(Pdu::new(1, Body::DeliverSm(sm)).to_bytes().is_ok());
    }

    #[test]
    fn ucs2_screen_should_decode_with_its_length_against_80() {
        let text = "Chợ 384: đăng ký cửa hàng. Nhập mã xã/phường (vd 6001):";
        let s = Screen::from_pdu(&screen_pdu(reply(text, 2, [4, 0])), Instant::now()).unwrap();
        assert_eq!(s.text, text);
        assert_eq!(s.msisdn, "84912345678");
        assert!(s.expects_input() && !s.is_final() && !s.end_bit());
        assert_eq!(s.session_number(), Some(4));
        assert_eq!(s.encoding_line(), format!("[UCS2 {}/80]", text.chars().count()));
    }

    #[test]
    fn gsm_final_screen_should_show_its_septets_against_182() {
        let s = Screen::from_pdu(&screen_pdu(reply("Registered!", 17, [4, 1])), Instant::now()).unwrap();
        assert!(s.is_final() && s.end_bit());
        assert_eq!(s.encoding_line(), "[GSM 11/182]");
    }

    #[test]
    fn data_sm_screen_should_read_message_payload() {
        let mut tlvs = Tlvs::default();
        tlvs.set(tag::USSD_SERVICE_OP, vec![17u8]);
        tlvs.set(tag::MESSAGE_PAYLOAD, ucs2_encode("Xong"));
        let body = Body::DataSm(Box::new(crate::smpp::pdu::DataSm {
            dest: Address::international("8490"),
            data_coding: 8,
            tlvs,
            ..Default::default()
        }));
        let s = Screen::from_pdu(&screen_pdu(body), Instant::now()).unwrap();
        assert_eq!((s.command, s.text.as_str(), s.session_info), ("data_sm", "Xong", None));
        assert!(Screen::from_pdu(&screen_pdu(Body::EnquireLink), Instant::now()).is_none());
    }

    #[test]
    fn wrap_should_keep_lines_and_cut_long_words() {
        assert_eq!(
            wrap("1. Đăng bán sản phẩm\n2. Đơn hàng", 32),
            vec!["1. Đăng bán sản phẩm", "2. Đơn hàng"]
        );
        assert_eq!(wrap("aaa bbb ccc", 7), vec!["aaa bbb", "ccc"]);
        assert_eq!(wrap("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        assert_eq!(wrap("", 4), vec![""]);
    }

    #[test]
    fn framed_screen_should_box_the_text_and_end_with_the_encoding() {
        let s = Screen::from_pdu(
            &screen_pdu(reply("1. Đăng bán sản phẩm\n2. Đơn hàng", 2, [1, 0])),
            Instant::now(),
        )
        .unwrap();
        let f = s.framed(32);
        let lines: Vec<&str> = f.lines().collect();
        assert_eq!(lines.len(), 5, "{f}");
        assert!(lines[1].contains("1. Đăng bán sản phẩm"));
        let widths: Vec<usize> = lines[..4].iter().map(|l| l.chars().count()).collect();
        assert!(widths.iter().all(|w| *w == widths[0]), "{f}");
        assert_eq!(lines[4], "[UCS2 32/80]");
    }
}
