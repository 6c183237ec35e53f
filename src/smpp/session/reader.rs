//! The reader of a session: one task per connection that reads frames, answers what
//! the protocol answers itself, hands requests on, completes responses and keeps the
//! timers (bind, enquire_link, drain, unbind, the requests' timeouts).

use super::writer::write_loop;
use super::*;

/// How many warnings about what a peer sends are written per connection: the first few,
/// then one every [`WarnBudget::EVERY`] (with the count of those left out), so that a peer
/// sending garbage in a loop fills neither the log nor the disk.
#[derive(Debug, Default)]
struct WarnBudget {
    seen: u64,
    written: u64,
}

impl WarnBudget {
    /// Warnings written in full.
    const FIRST: u64 = 5;
    /// Then one in this many.
    const EVERY: u64 = 1000;

    /// Whether to write this warning.
    fn take(&mut self) -> bool {
        self.seen += 1;
        let write = self.seen <= Self::FIRST || self.seen % Self::EVERY == 0;
        if write {
            let left_out = self.seen - self.written - 1;
            if left_out > 0 {
                warn!(left_out, "warnings about this peer's PDUs left out");
            }
            self.written = self.seen;
        }
        write
    }

    /// Writes how many were left out since the last one written (at the end of a session).
    fn flush(&mut self) {
        let left_out = self.seen - self.written;
        if left_out > 0 {
            warn!(left_out, "warnings about this peer's PDUs left out");
            self.written = self.seen;
        }
    }
}

/// Where the reader is.
enum Phase {
    /// Server: waiting for a bind until the deadline.
    AwaitBind,
    /// Client: waiting for the response to our bind.
    Binding { seq: u32 },
    /// Bound.
    Bound(BindKind),
    /// Waiting for in-flight requests before unbinding (ours, or answering the peer's).
    Draining { peer_unbind_seq: Option<u32> },
    /// Our unbind is out; waiting for unbind_resp.
    Unbinding { seq: u32 },
}

/// Starts a session on a connected socket. Returns its handle and the future that runs it
/// until it ends; the caller spawns that future on its task tracker.
pub fn start(
    conn: impl Into<Conn>,
    params: SessionParams,
) -> (SessionHandle, impl Future<Output = SessionEnd> + Send) {
    let conn = conn.into();
    let peer = conn.peer_addr();
    let (read_half, write_half) = conn.split();
    let role = match params.role {
        RoleParams::Server(_) => Role::Server,
        RoleParams::Client { .. } => Role::Client,
    };
    let label: Arc<str> = match &params.role {
        RoleParams::Server(_) => peer.to_string().into(),
        RoleParams::Client { label, .. } => label.clone(),
    };
    // An SMSC's from the start; a server account's once it binds (set once: a second bind
    // is refused).
    let prefixes = std::sync::OnceLock::new();
    if let RoleParams::Client { msisdn_prefixes, .. } = &params.role {
        let _ = prefixes.set(msisdn_prefixes.clone());
    }
    let t = &params.tuning;
    // Room for every response we may owe and every request we may have out, plus control PDUs.
    let (outbox, outbox_rx) = mpsc::channel(t.window + t.inbound_window + 64);
    let (state, _) = watch::channel(SessionState::Open);
    let shared = Arc::new(Shared {
        id: NEXT_SESSION_ID.fetch_add(1, Ordering::Relaxed),
        role,
        peer,
        label: RwLock::new(label.clone()),
        prefixes,
        seq: AtomicU32::new(1),
        pending: Mutex::new(HashMap::default()),
        window: Arc::new(Semaphore::new(t.window)),
        window_size: AtomicU32::new(t.window as u32),
        outbox,
        state,
        done: CancellationToken::new(),
        response_timeout: t.response_timeout,
    });
    let handle = SessionHandle { shared: shared.clone() };
    let span = info_span!("smpp", id = shared.id, %peer, role = ?role);
    let done = shared.done.clone();
    let next_sweep = Instant::now() + sweep_every(t.response_timeout);
    let stall = t.response_timeout;
    let reader = Reader {
        frames: FrameReader::new(read_half, t.max_pdu_len),
        inbound_permits: Arc::new(Semaphore::new(t.inbound_window)),
        handle: handle.clone(),
        params,
        label,
        _guard: None,
        warnings: WarnBudget::default(),
        last_rx: Instant::now(),
        enquire_out: None,
        deadline: None,
        next_sweep,
    };
    let fut = async move {
        let write = write_loop(write_half, outbox_rx, done, stall);
        let (end, ()) = tokio::join!(reader.run(), write);
        end
    }
    .instrument(span);
    (handle, fut)
}

struct Reader {
    frames: FrameReader<ReadSide>,
    inbound_permits: Arc<Semaphore>,
    handle: SessionHandle,
    params: SessionParams,
    label: Arc<str>,
    _guard: Option<Box<dyn Send + Sync>>,
    /// Warnings about what the peer sends, so that garbage cannot flood the log.
    warnings: WarnBudget,
    last_rx: Instant,
    /// Our enquire_link awaiting its response: sequence and when it was sent.
    enquire_out: Option<(u32, Instant)>,
    /// Deadline of the current phase (bind, drain, unbind).
    deadline: Option<Instant>,
    /// When the requests waiting for a response are next checked for their timeout.
    next_sweep: Instant,
}

enum Step {
    Continue,
    Phase(Phase),
    End(SessionEnd),
}

impl Reader {
    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    async fn run(mut self) -> SessionEnd {
        let t = self.params.tuning.clone();
        let mut phase = match &self.params.role {
            RoleParams::Server(_) => {
                self.deadline = Some(Instant::now() + t.bind_timeout);
                Phase::AwaitBind
            }
            RoleParams::Client { bind, .. } => {
                let seq = self.shared().next_seq();
                let bind = bind.clone();
                self.send(Pdu::new(seq, Body::Bind(bind))).await;
                self.deadline = Some(Instant::now() + t.bind_timeout);
                Phase::Binding { seq }
            }
        };
        let mut drain: std::pin::Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(std::future::pending());
        let shutdown = self.params.shutdown.clone();
        let done = self.shared().done.clone();
        // One of each for the whole session rather than one per frame: the cancellation
        // waits may be polled again after they fire, and the timer is armed at the earliest
        // deadline and moved on lazily (see the end of the loop).
        let done_wait = done.cancelled();
        let shutdown_wait = shutdown.cancelled();
        let timer = sleep_until(self.next_timer(&phase, &t));
        tokio::pin!(done_wait, shutdown_wait, timer);
        let end = loop {
            let step = tokio::select! {
                biased;
                () = &mut done_wait => Step::End(SessionEnd::Io("write failed".into())),
                () = &mut shutdown_wait, if !matches!(phase, Phase::Draining { .. } | Phase::Unbinding { .. }) => {
                    match phase {
                        Phase::Bound(_) => {
                            info!("shutting down: draining, then unbind");
                            Step::Phase(Phase::Draining { peer_unbind_seq: None })
                        }
                        _ => Step::End(SessionEnd::Shutdown),
                    }
                }
                () = &mut drain => self.drained(&phase).await,
                frame = self.frames.next() => match frame {
                    Ok(Some(frame)) => {
                        self.last_rx = Instant::now();
                        let mut step = self.on_frame(frame, &phase).await;
                        // The frames that came in the same read are taken now, without a
                        // turn of the select each: they are as received as the first.
                        while let Step::Continue = step {
                            step = match self.frames.buffered() {
                                Ok(Some(frame)) => self.on_frame(frame, &phase).await,
                                Ok(None) => break,
                                Err(e) => self.on_frame_error(e).await,
                            };
                        }
                        step
                    }
                    Ok(None) => Step::End(SessionEnd::PeerClosed),
                    Err(e) => self.on_frame_error(e).await,
                },
                () = &mut timer => {
                    if Instant::now() < self.phase_due(&phase, &t) {
                        // The requests' sweep was due (it runs below), or traffic moved the
                        // deadline on since the timer was armed; it is armed again below.
                        Step::Continue
                    } else {
                        self.on_timer(&phase, &t).await
                    }
                }
            };
            match step {
                Step::Continue => {}
                Step::End(end) => break end,
                Step::Phase(next) => {
                    if let Phase::Draining { .. } = next {
                        self.shared().state.send_replace(SessionState::Unbinding);
                        self.deadline = Some(Instant::now() + t.drain_timeout);
                        drain = Box::pin(wait_all(
                            self.shared().window.clone(),
                            self.shared().window_size.load(Ordering::Relaxed),
                            self.inbound_permits.clone(),
                            t.inbound_window as u32,
                        ));
                    } else {
                        drain = Box::pin(std::future::pending());
                    }
                    if let Phase::Unbinding { .. } = next {
                        // Shutdown as a whole stays within the drain timeout.
                        self.deadline = Some(Instant::now() + t.response_timeout.min(t.drain_timeout));
                    }
                    phase = next;
                }
            }
            // The requests' sweep, here rather than in the timer's branch: under a steady
            // stream of frames the biased select may not poll the timer, and timeouts must
            // not wait for a lull.
            let now = Instant::now();
            if now >= self.next_sweep {
                self.sweep_pending(now);
                self.next_sweep = now + sweep_every(t.response_timeout);
            }
            // A deadline may have come nearer (a new phase, an enquire_link sent) or the timer
            // may have fired: arm it again. A later deadline waits until the timer fires.
            let due = self.next_timer(&phase, &t);
            if due < timer.deadline() || timer.is_elapsed() {
                timer.as_mut().reset(due);
            }
        };
        self.finish(&end);
        end
    }

    /// When the timer is next due: the phase's deadline or the sweep of the requests.
    fn next_timer(&self, phase: &Phase, t: &Tuning) -> Instant {
        self.phase_due(phase, t).min(self.next_sweep)
    }

    /// Answers `None` (timed out) to the requests past their time.
    fn sweep_pending(&self, now: Instant) {
        let expired: Vec<Waiting> = {
            let mut pending = self.shared().pending();
            let due: Vec<u32> = pending.iter().filter(|(_, w)| w.until <= now).map(|(&seq, _)| seq).collect();
            due.iter().filter_map(|seq| pending.remove(seq)).collect()
        };
        for w in expired {
            let _ = w.tx.send(None);
        }
    }

    /// The deadline of the phase: the bind, the drain, the unbind, or when bound the next
    /// enquire_link or its response.
    fn phase_due(&self, phase: &Phase, t: &Tuning) -> Instant {
        match phase {
            Phase::Bound(_) => match self.enquire_out {
                Some((_, sent)) => sent + t.response_timeout,
                None => self.last_rx + t.enquire_link,
            },
            _ => self.deadline.unwrap_or_else(|| Instant::now() + t.bind_timeout),
        }
    }

    async fn on_timer(&mut self, phase: &Phase, t: &Tuning) -> Step {
        match phase {
            Phase::AwaitBind => {
                info!("no bind within {:?}, closing", t.bind_timeout);
                Step::End(SessionEnd::BindTimeout)
            }
            Phase::Binding { .. } => {
                warn!("no bind_resp within {:?}", t.bind_timeout);
                Step::End(SessionEnd::BindTimeout)
            }
            Phase::Bound(_) => match self.enquire_out {
                Some((_, sent)) if self.last_rx < sent => {
                    warn!("enquire_link unanswered for {:?}, closing", t.response_timeout);
                    Step::End(SessionEnd::LinkDead)
                }
                _ => {
                    let seq = self.shared().next_seq();
                    self.send(Pdu::new(seq, Body::EnquireLink)).await;
                    self.enquire_out = Some((seq, Instant::now()));
                    Step::Continue
                }
            },
            Phase::Draining { .. } => {
                warn!("drain timed out after {:?}", t.drain_timeout);
                self.drained(phase).await
            }
            Phase::Unbinding { .. } => {
                warn!("no unbind_resp, closing");
                Step::End(SessionEnd::Shutdown)
            }
        }
    }

    /// In-flight work is done (or the drain timed out): finish the unbind.
    async fn drained(&mut self, phase: &Phase) -> Step {
        match phase {
            Phase::Draining { peer_unbind_seq: Some(seq) } => {
                self.send(Pdu::new(*seq, Body::UnbindResp)).await;
                Step::End(SessionEnd::PeerUnbound)
            }
            Phase::Draining { peer_unbind_seq: None } => {
                let seq = self.shared().next_seq();
                self.send(Pdu::new(seq, Body::Unbind)).await;
                Step::Phase(Phase::Unbinding { seq })
            }
            _ => Step::Continue,
        }
    }

    async fn on_frame_error(&mut self, e: FrameError) -> Step {
        match e {
            FrameError::Unframeable { len, header } => {
                if self.warnings.take() {
                    warn!(len, "unframeable command_length, closing");
                }
                let seq = header.map(|h| h.sequence).unwrap_or(0);
                self.nack(seq, status::ESME_RINVCMDLEN).await;
                Step::End(SessionEnd::Unframeable)
            }
            FrameError::UnexpectedEof(n) => {
                debug!(buffered = n, "peer closed inside a PDU");
                Step::End(SessionEnd::PeerClosed)
            }
            FrameError::Io(e) => Step::End(SessionEnd::Io(e.to_string())),
        }
    }

    async fn on_frame(&mut self, frame: Frame, phase: &Phase) -> Step {
        let bytes = match frame {
            Frame::Pdu(bytes) => bytes,
            Frame::Oversized(h) => {
                if self.warnings.take() {
                    warn!(
                        len = h.command_length,
                        max = self.params.tuning.max_pdu_len,
                        "oversized PDU discarded"
                    );
                }
                if !h.is_response() {
                    self.nack(h.sequence, status::ESME_RINVCMDLEN).await;
                }
                return Step::Continue;
            }
        };
        let pdu = match Pdu::decode(&bytes) {
            Ok(pdu) => pdu,
            Err(fail) => {
                let Some(h) = fail.header else { return Step::Continue };
                if self.warnings.take() {
                    warn!(command = command_name(h.command_id), seq = h.sequence, error = %fail.error, "malformed PDU");
                }
                if h.is_response() {
                    // Whoever waits for it learns that it came back unusable.
                    self.complete(Pdu {
                        status: status::ESME_RINVCMDLEN,
                        sequence: h.sequence,
                        body: Body::GenericNack,
                    });
                } else {
                    self.nack(h.sequence, fail.error.nack_status()).await;
                }
                return Step::Continue;
            }
        };
        crate::smpp::counters::pdu(crate::smpp::counters::Direction::In, pdu.command_id(), pdu.status);
        if pdu.is_response() {
            return self.on_response(pdu, phase);
        }
        self.on_request(pdu, phase).await
    }

    fn on_response(&mut self, pdu: Pdu, phase: &Phase) -> Step {
        match (&pdu.body, phase) {
            (Body::BindResp(_), Phase::Binding { seq }) | (Body::GenericNack, Phase::Binding { seq })
                if pdu.sequence == *seq =>
            {
                // A generic_nack answers a bind it could not read: a refusal whatever its status.
                if pdu.status != status::ESME_ROK || pdu.body == Body::GenericNack {
                    warn!(status = %status::name(pdu.status), "bind refused by the SMSC");
                    let st = if pdu.status == status::ESME_ROK { status::ESME_RBINDFAIL } else { pdu.status };
                    return Step::End(SessionEnd::BindRejected(st));
                }
                let kind = match &self.params.role {
                    RoleParams::Client { bind, .. } => bind.kind,
                    RoleParams::Server(_) => BindKind::Transceiver,
                };
                self.bound(kind);
                Step::Phase(Phase::Bound(kind))
            }
            (Body::UnbindResp, Phase::Unbinding { seq }) if pdu.sequence == *seq => {
                Step::End(SessionEnd::Shutdown)
            }
            (Body::EnquireLinkResp, _) if self.enquire_out.is_some_and(|(s, _)| s == pdu.sequence) => {
                self.enquire_out = None;
                Step::Continue
            }
            _ => {
                self.complete(pdu);
                Step::Continue
            }
        }
    }

    /// Hands a response to the request waiting for it.
    fn complete(&self, pdu: Pdu) {
        let waiter = self.shared().pending().remove(&pdu.sequence);
        match waiter {
            Some(w) => {
                let _ = w.tx.send(Some(pdu));
            }
            None => {
                if self.enquire_out.is_some_and(|(s, _)| s == pdu.sequence) {
                    return;
                }
                debug!(
                    command = command_name(pdu.command_id()),
                    seq = pdu.sequence,
                    "response to no pending request"
                );
            }
        }
    }

    async fn on_request(&mut self, pdu: Pdu, phase: &Phase) -> Step {
        let seq = pdu.sequence;
        let command_id = pdu.command_id();
        match pdu.body {
            Body::EnquireLink => {
                self.send(Pdu::new(seq, Body::EnquireLinkResp)).await;
                Step::Continue
            }
            Body::Bind(bind) => match phase {
                Phase::AwaitBind => self.on_bind(seq, bind).await,
                Phase::Bound(_) => {
                    self.answer(seq, command_id, status::ESME_RALYBND).await;
                    Step::Continue
                }
                _ => {
                    self.answer(seq, command_id, status::ESME_RINVBNDSTS).await;
                    Step::Continue
                }
            },
            Body::Unbind => match phase {
                Phase::Bound(_) => {
                    info!("peer unbinds");
                    Step::Phase(Phase::Draining { peer_unbind_seq: Some(seq) })
                }
                Phase::Unbinding { .. } | Phase::Draining { .. } => {
                    // Both sides unbinding at once: answer and close.
                    self.send(Pdu::new(seq, Body::UnbindResp)).await;
                    Step::End(SessionEnd::PeerUnbound)
                }
                _ => {
                    self.answer(seq, command_id, status::ESME_RINVBNDSTS).await;
                    Step::Continue
                }
            },
            Body::Outbind(_) => {
                self.nack(seq, status::ESME_RINVBNDSTS).await;
                Step::Continue
            }
            body @ (Body::SubmitSm(_) | Body::DeliverSm(_) | Body::DataSm(_)) => {
                let kind = match phase {
                    Phase::Bound(kind) => *kind,
                    Phase::Draining { .. } | Phase::Unbinding { .. } => {
                        self.answer(seq, command_id, status::ESME_RTHROTTLED).await;
                        return Step::Continue;
                    }
                    _ => {
                        self.answer(seq, command_id, status::ESME_RINVBNDSTS).await;
                        return Step::Continue;
                    }
                };
                if !carries(kind, self.shared().role, Way::In) {
                    self.answer(seq, command_id, status::ESME_RINVBNDSTS).await;
                    return Step::Continue;
                }
                self.dispatch(Pdu { status: pdu.status, sequence: seq, body }).await;
                Step::Continue
            }
            // Responses never reach here.
            Body::BindResp(_)
            | Body::UnbindResp
            | Body::EnquireLinkResp
            | Body::GenericNack
            | Body::SubmitSmResp(_)
            | Body::DeliverSmResp(_)
            | Body::DataSmResp(_) => Step::Continue,
        }
    }

    async fn dispatch(&mut self, pdu: Pdu) {
        let seq = pdu.sequence;
        let command_id = pdu.command_id();
        let Ok(permit) = self.inbound_permits.clone().try_acquire_owned() else {
            self.answer(seq, command_id, status::ESME_RTHROTTLED).await;
            return;
        };
        let responder = Responder {
            sequence: seq,
            command_id,
            outbox: self.shared().outbox.clone(),
            _permit: permit,
            answered: false,
            received: self.last_rx,
        };
        let req = InboundRequest { pdu, session: self.handle.clone(), responder };
        let tx = match &self.params.inbound {
            Inbound::Handler(handle) => return handle(req),
            Inbound::Queue(tx) => tx,
        };
        if let Err((responder, st)) = try_queue(tx, req) {
            responder.respond(st, "").await;
        }
    }

    async fn on_bind(&mut self, seq: u32, bind: Bind) -> Step {
        let RoleParams::Server(auth) = &self.params.role else {
            self.answer(seq, Body::Bind(bind).command_id(), status::ESME_RINVBNDSTS).await;
            return Step::Continue;
        };
        let kind = bind.kind;
        match auth.authenticate(self.shared().peer, &bind) {
            BindDecision::Accept(grant) => {
                if !self.wait_or_shutdown(grant.delay).await {
                    return Step::End(SessionEnd::Shutdown);
                }
                let resp =
                    Body::BindResp(BindResp { kind, system_id: grant.system_id.clone(), tlvs: sc_version() });
                self.send(Pdu::new(seq, resp)).await;
                info!(system_id = %bind.system_id.escape_debug(), kind = kind.as_str(), "bound");
                self.label = grant.label.clone();
                let _ = self.shared().prefixes.set(grant.msisdn_prefixes);
                *self.shared().label.write().unwrap_or_else(PoisonError::into_inner) = grant.label;
                self.resize_window(grant.window);
                self._guard = Some(grant.guard);
                self.bound(kind);
                Step::Phase(Phase::Bound(kind))
            }
            BindDecision::Reject { status: st, delay } => {
                if self.warnings.take() {
                    warn!(system_id = %bind.system_id.escape_debug(), status = %status::name(st), "bind refused");
                }
                // Shutdown during the wait closes without an answer, as for a right bind.
                if !self.wait_or_shutdown(delay).await {
                    return Step::End(SessionEnd::Shutdown);
                }
                let resp = Body::BindResp(BindResp { kind, system_id: String::new(), tlvs: Tlvs::default() });
                self.send(Pdu { status: st, sequence: seq, body: resp }).await;
                Step::End(SessionEnd::BindRejected(st))
            }
        }
    }

    /// Waits until `delay` after the PDU being answered came in, or less if shutdown comes
    /// first (then `false`).
    async fn wait_or_shutdown(&self, delay: Duration) -> bool {
        if delay.is_zero() {
            return true;
        }
        tokio::select! {
            () = sleep_until(self.last_rx + delay) => true,
            () = self.params.shutdown.cancelled() => false,
        }
    }

    fn resize_window(&self, window: usize) {
        let s = self.shared();
        let current = s.window_size.load(Ordering::Relaxed) as usize;
        if window > current {
            s.window.add_permits(window - current);
        } else if window < current {
            s.window.forget_permits(current - window);
        }
        s.window_size.store(window as u32, Ordering::Relaxed);
    }

    fn bound(&mut self, kind: BindKind) {
        self.deadline = None;
        self.shared().state.send_replace(SessionState::Bound(kind));
        self.params.registry.add(&self.label, self.handle.clone());
    }

    fn finish(&mut self, end: &SessionEnd) {
        self.warnings.flush();
        let s = self.shared();
        s.state.send_replace(SessionState::Closed);
        s.done.cancel();
        s.pending().clear();
        self.params.registry.remove(&self.label, s.id);
        info!(?end, label = %self.label, "session ended");
    }

    /// Answers a request with an error (or plain) status and the matching empty response.
    async fn answer(&self, seq: u32, command_id: u32, st: u32) {
        match empty_response(command_id) {
            Some(body) => self.send(Pdu { status: st, sequence: seq, body }).await,
            None => self.nack(seq, st).await,
        }
    }

    async fn nack(&self, seq: u32, st: u32) {
        self.send(Pdu { status: st, sequence: seq, body: Body::GenericNack }).await;
    }

    async fn send(&self, pdu: Pdu) {
        crate::smpp::counters::pdu(crate::smpp::counters::Direction::Out, pdu.command_id(), pdu.status);
        match pdu.to_bytes() {
            Ok(bytes) => {
                let _ = self.shared().outbox.send(bytes).await;
            }
            Err(e) => warn!(error = %e, command = command_name(pdu.command_id()), "cannot encode"),
        }
    }
}

fn sc_version() -> Tlvs {
    let mut t = Tlvs::default();
    t.set(crate::smpp::pdu::tag::SC_INTERFACE_VERSION, vec![0x34u8]);
    t
}

/// Completes once every permit of both semaphores is free: nothing is in flight.
async fn wait_all(window: Arc<Semaphore>, n: u32, inbound: Arc<Semaphore>, m: u32) {
    let a = window.acquire_many_owned(n.max(1)).await;
    let b = inbound.acquire_many_owned(m.max(1)).await;
    // Keep the permits: nothing new may start once drained.
    std::mem::forget((a, b));
}
