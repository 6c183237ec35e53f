//! `chogate phone`: one subscriber driven by a person (or a pipe, one answer per line),
//! through a USSD-centre bind to chogate, with each screen shown as a phone shows it.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::SimError;
use super::link::{self, Link};
use super::stats::Counters;
use super::subscriber::SCREEN_TIMEOUT;
use super::ussd::{Action, Screen, op};
use crate::config::{Secret, SmppTuning};
use crate::smpp::pdu::{Body, Pdu};
use crate::smpp::session::SessionError;
use crate::smpp::status;

/// Characters per line of the simulated display.
pub const SCREEN_WIDTH: usize = 32;

/// What the phone needs.
#[derive(Debug, Clone)]
pub struct PhoneOptions {
    /// chogate's SMPP server.
    pub connect: SocketAddr,
    /// The USSD-centre account.
    pub system_id: String,
    /// Its password.
    pub password: Secret,
    /// The subscriber's MSISDN (canonical `84…`).
    pub msisdn: String,
    /// What Enter dials.
    pub service_code: String,
    /// Engine settings for the bind.
    pub tuning: SmppTuning,
}

/// Lines typed on standard input, read by a blocking thread so that the runtime never
/// waits on the terminal. The channel closes at end of input.
pub fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(4);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rx
}

const PROMPT: &str = "Enter = dial {code} (or type a dial string like *384*1#), q = quit";

/// How one dialogue ended, for the loop around it.
enum Next {
    /// Back to the dial prompt.
    Dial,
    /// No more input: quit.
    Quit,
}

struct Phone<'a> {
    opts: &'a PhoneOptions,
    link: &'a Link,
    screens: mpsc::Receiver<Screen>,
    lines: mpsc::Receiver<String>,
    out: &'a mut (dyn Write + Send),
    session: u8,
}

/// Binds, then dials and answers as the lines say until `q` or the end of input.
pub async fn run(
    opts: PhoneOptions,
    lines: mpsc::Receiver<String>,
    out: &mut (dyn Write + Send),
) -> Result<(), SimError> {
    let (link, inbound) =
        link::bind_ussdc(opts.connect, &opts.system_id, opts.password.expose(), 1, &opts.tuning, 16).await?;
    writeln!(
        out,
        "Bound to chogate at {} as {}; phone number {}.",
        opts.connect, opts.system_id, opts.msisdn
    )?;
    let (tx, screens) = mpsc::channel(8);
    let routes = Arc::new(HashMap::from([(opts.msisdn.clone(), tx)]));
    let stop_router = CancellationToken::new();
    let router = tokio::spawn(link::route_screens(
        inbound,
        routes,
        Arc::new(Counters::default()),
        CancellationToken::new(),
        stop_router.clone(),
    ));
    let mut phone = Phone { opts: &opts, link: &link, screens, lines, out: &mut *out, session: 0 };
    let result = phone.run().await;
    drop(phone);
    stop_router.cancel();
    let _ = router.await;
    if result.is_ok() {
        let _ = writeln!(out, "Unbinding.");
    }
    link.close().await;
    result
}

impl Phone<'_> {
    async fn run(&mut self) -> Result<(), SimError> {
        loop {
            writeln!(self.out, "{}", PROMPT.replace("{code}", &self.opts.service_code))?;
            self.out.flush()?;
            let Some(line) = self.read_line().await? else { return Ok(()) };
            let line = line.trim();
            if line.eq_ignore_ascii_case("q") {
                return Ok(());
            }
            let dial = if line.is_empty() { self.opts.service_code.clone() } else { line.to_owned() };
            if let Next::Quit = self.dialogue(&dial).await? {
                return Ok(());
            }
        }
    }

    /// The next line typed; `None` at end of input. A screen arriving meanwhile is shown.
    async fn read_line(&mut self) -> Result<Option<String>, SimError> {
        loop {
            tokio::select! {
                l = self.lines.recv() => return Ok(l),
                s = self.screens.recv() => {
                    if let Some(s) = s {
                        writeln!(self.out, "(a screen outside any dialogue)")?;
                        self.show(&s)?;
                    }
                }
                () = self.link.handle.closed() => return Err(SimError::ConnectionLost),
            }
        }
    }

    async fn dialogue(&mut self, dial: &str) -> Result<Next, SimError> {
        self.session = self.session.wrapping_add(1);
        if !self.send(dial, op::PSSR_INDICATION, dial).await? {
            return Ok(Next::Dial);
        }
        loop {
            let Some(screen) = self.wait_screen(dial).await? else { return Ok(Next::Dial) };
            if screen.session_number() != Some(self.session) {
                writeln!(
                    self.out,
                    "(warning: its_session_info not echoed: sent session {}, got {:?})",
                    self.session,
                    screen.session_number()
                )?;
            }
            self.show(&screen)?;
            if screen.is_final() {
                writeln!(self.out, "(end of dialogue)")?;
                if !screen.end_bit() {
                    writeln!(self.out, "(warning: final screen without the end bit in its_session_info)")?;
                }
                return Ok(Next::Dial);
            }
            if !screen.expects_input() {
                writeln!(self.out, "(warning: ussd_service_op {:?}, expected 2 or 17)", screen.op)?;
            }
            writeln!(self.out, "Reply (x = abort):")?;
            self.out.flush()?;
            let line = tokio::select! {
                l = self.lines.recv() => l,
                () = self.link.handle.closed() => return Err(SimError::ConnectionLost),
            };
            match line.as_deref().map(str::trim) {
                None => {
                    self.send(dial, op::USER_ABORT, "").await?;
                    writeln!(self.out, "(end of input: dialogue aborted)")?;
                    return Ok(Next::Quit);
                }
                Some(x) if x.eq_ignore_ascii_case("x") => {
                    self.send(dial, op::USER_ABORT, "").await?;
                    writeln!(self.out, "(dialogue aborted)")?;
                    return Ok(Next::Dial);
                }
                Some(answer) => {
                    let answer = answer.to_owned();
                    if !self.send(dial, op::USSR_CONFIRM, &answer).await? {
                        return Ok(Next::Dial);
                    }
                }
            }
        }
    }

    /// Sends one action; `Ok(false)` (with the reason printed) when chogate refused it.
    async fn send(&mut self, dial: &str, op: u8, text: &str) -> Result<bool, SimError> {
        let body = Action { msisdn: &self.opts.msisdn, dial, op, session: self.session, text }.to_body();
        let resp: Result<Pdu, SessionError> = self.link.handle.request(body).await;
        match resp {
            Ok(pdu) if pdu.status == status::ESME_ROK && pdu.body != Body::GenericNack => Ok(true),
            Ok(pdu) => {
                let what = if op == op::PSSR_INDICATION { "the dial" } else { "the answer" };
                let hint = match pdu.status {
                    status::ESME_RX_T_APPN => " — temporary application error: is the USSD service running?",
                    status::ESME_RTHROTTLED => " — throttled: try again",
                    _ => "",
                };
                writeln!(
                    self.out,
                    "chogate refused {what}: {} (0x{:08X}){hint}",
                    status::name(pdu.status),
                    pdu.status
                )?;
                Ok(false)
            }
            Err(SessionError::Timeout(d)) => {
                writeln!(self.out, "no response from chogate within {d:?}")?;
                Ok(false)
            }
            Err(SessionError::Encode(e)) => {
                writeln!(self.out, "cannot send that: {e}")?;
                Ok(false)
            }
            Err(SessionError::Closed | SessionError::NotBound(_) | SessionError::NotPermitted { .. }) => {
                Err(SimError::ConnectionLost)
            }
        }
    }

    /// The next screen of the dialogue; `None` (with a user abort sent) when none came in time.
    async fn wait_screen(&mut self, dial: &str) -> Result<Option<Screen>, SimError> {
        let deadline = Instant::now() + SCREEN_TIMEOUT;
        tokio::select! {
            s = self.screens.recv() => s.map(Some).ok_or(SimError::ConnectionLost),
            () = sleep_until(deadline) => {
                writeln!(self.out, "no screen from chogate within {} s; dialogue aborted", SCREEN_TIMEOUT.as_secs())?;
                self.send(dial, op::USER_ABORT, "").await?;
                Ok(None)
            }
            () = self.link.handle.closed() => Err(SimError::ConnectionLost),
        }
    }

    fn show(&mut self, screen: &Screen) -> Result<(), SimError> {
        writeln!(self.out, "{}", screen.framed(SCREEN_WIDTH))?;
        self.out.flush()?;
        Ok(())
    }
}
