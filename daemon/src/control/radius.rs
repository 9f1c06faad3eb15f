//! RADIUS logins on the control task (docs/radius.md): a code that is no local voucher is
//! asked of the RADIUS servers in a task of its own, so the control task goes on meanwhile;
//! the answer comes back here and an Access-Accept becomes the client's session, sold and
//! connected as a voucher's is. Side effects: spawns the round trip; a login sells a session.

use std::collections::BTreeMap;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::{Control, RedeemBy, RedeemError, Redeemed};
use crate::{
    mac::MacAddr,
    radius::Servers,
    radius::{
        self, ExchangeError, Login, Outcome,
        coa::{CoaKind, CoaRequest},
        codec::Attribute,
        dict,
        spool::{Spool, SpooledSession},
    },
    sessions::engine::{Event, Now, SessionId},
    views::ClientView,
};

/// Who waits for a login's answer: the API (`POST /v1/vouchers/redeem`) or the portal's form.
pub(super) enum LoginReply {
    Api(oneshot::Sender<Result<ClientView, RedeemError>>),
    Portal(oneshot::Sender<Result<Redeemed, RedeemError>>),
    /// A new device logged in by its MAC (`radius.mac_auth`): nobody waits.
    MacAuth,
}

/// A login's round trip, done.
pub(super) struct LoginAnswer {
    mac: MacAddr,
    user: String,
    ip: Option<std::net::Ipv4Addr>,
    result: Result<Outcome, ExchangeError>,
    reply: LoginReply,
}

/// A session a RADIUS server sold: its accounting state, and when its last Start or
/// Interim-Update went out (this run; a restart sends the next one a full interval later).
#[derive(Clone, Debug)]
pub(super) struct RadiusSession {
    stored: SpooledSession,
    last_sent: Instant,
}

/// The logins in flight, the sessions RADIUS sold, and the accounting spool.
#[derive(Debug)]
pub(super) struct Radius {
    answers_to: mpsc::UnboundedSender<LoginAnswer>,
    answers: Option<mpsc::UnboundedReceiver<LoginAnswer>>,
    sessions: BTreeMap<SessionId, RadiusSession>,
    spool: Option<Spool>,
    coa_to: mpsc::UnboundedSender<CoaRequest>,
    coa: Option<mpsc::UnboundedReceiver<CoaRequest>>,
    /// When each unpaid device was last asked about by its MAC (`radius.mac_auth`).
    mac_tried: std::collections::HashMap<MacAddr, Instant>,
}

impl std::fmt::Debug for LoginAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginAnswer")
            .field("mac", &self.mac)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Default for Radius {
    fn default() -> Self {
        let (answers_to, answers) = mpsc::unbounded_channel();
        let (coa_to, coa) = mpsc::unbounded_channel();
        Self {
            coa_to,
            coa: Some(coa),
            mac_tried: std::collections::HashMap::new(),
            answers_to,
            answers: Some(answers),
            sessions: BTreeMap::new(),
            spool: None,
        }
    }
}

impl Radius {
    /// Where the logins' answers arrive; taken by `run`.
    pub(super) fn take_answers(&mut self) -> Option<mpsc::UnboundedReceiver<LoginAnswer>> {
        self.answers.take()
    }

    /// Where the `CoA` listener's requests arrive; taken by `run`.
    pub(super) fn take_coa(&mut self) -> Option<mpsc::UnboundedReceiver<CoaRequest>> {
        self.coa.take()
    }
}

impl Control {
    /// `Command::Redeem`: a local voucher, or else a RADIUS login.
    pub(super) async fn redeem_command(
        &mut self,
        mac: MacAddr,
        code: String,
        reply: oneshot::Sender<Result<ClientView, RedeemError>>,
    ) {
        if let Some(result) = self.resume_radius(mac, &code).await {
            self.answer_once_saved(reply, result);
            return;
        }
        if self.goes_to_radius(mac, &code) {
            self.start_login(mac, code, LoginReply::Api(reply));
            return;
        }
        let result = self.redeem(mac, &code).await;
        self.answer_once_saved(reply, result);
    }

    /// `Command::PortalRedeem`: a typed code that is no local voucher is a RADIUS login.
    pub(super) async fn portal_redeem_command(
        &mut self,
        mac: MacAddr,
        by: RedeemBy,
        reply: oneshot::Sender<Result<Redeemed, RedeemError>>,
    ) {
        if let RedeemBy::Code(code) = &by
            && let Some(result) = self.resume_radius(mac, code).await
        {
            let result = result.map(|client| Redeemed {
                client,
                cookie: None,
            });
            self.answer_once_saved(reply, result);
            return;
        }
        if let RedeemBy::Code(code) = &by
            && self.goes_to_radius(mac, code)
        {
            self.start_login(mac, code.clone(), LoginReply::Portal(reply));
            return;
        }
        let result = self.portal_redeem(mac, by).await;
        self.answer_once_saved(reply, result);
    }

    /// A device entering again the code of a RADIUS session it holds here is connected to that
    /// session again, not sold a second one (which the server would grant from what the
    /// first had reported so far). No round trip: the session's budget is in the kernel.
    /// `None`: it holds no such session that is still usable, so the servers are asked.
    async fn resume_radius(
        &mut self,
        mac: MacAddr,
        code: &str,
    ) -> Option<Result<ClientView, RedeemError>> {
        use crate::sessions::engine::{ClientState, SessionState};
        let now = self.now();
        let id = self
            .radius
            .sessions
            .iter()
            .filter(|(_, session)| session.stored.user == code)
            .map(|(id, _)| *id)
            .find(|id| {
                self.engine
                    .session(*id)
                    .is_some_and(|session| session.mac == mac)
            })?;
        // Used up or expired but not yet ended by a poll: the server decides what is left.
        if let Some(SessionState::Consumed | SessionState::Expired) | None =
            self.engine.state_of(id, now)
        {
            return None;
        }
        if self.engine.client_state(mac) != ClientState::Connected {
            match self.engine.connect(mac, now) {
                Ok(effects) => {
                    self.apply(effects, now).await;
                    self.save();
                }
                Err(error) => {
                    return Some(Err(RedeemError::Failed(crate::text::chain_string(&error))));
                }
            }
        }
        Some(Ok(self.client_view(mac)))
    }

    /// Whether `code`, typed by `mac`, goes to the RADIUS servers: RADIUS is on, no local
    /// voucher has the code, and `mac` is not refused for wrong codes lately (then the local
    /// path answers that).
    fn goes_to_radius(&mut self, mac: MacAddr, code: &str) -> bool {
        self.config.radius.enabled()
            && self.vouchers.find_code(code).is_none()
            && self.vouchers.guesses_allow(mac)
    }

    /// Asks the RADIUS servers about `code` for `mac` in a task of its own; the answer comes
    /// back through [`Self::finish_login`].
    fn start_login(&mut self, mac: MacAddr, code: String, reply: LoginReply) {
        let ip = self.client_view(mac).ips.iter().find_map(|ip| match ip {
            std::net::IpAddr::V4(ip) => Some(*ip),
            std::net::IpAddr::V6(_) => None,
        });
        let login = Login {
            user: code.clone(),
            password: code,
            mac,
            ip,
        };
        let config = self.config.radius.clone();
        let answers_to = self.radius.answers_to.clone();
        tracing::debug!(%mac, "asking the RADIUS server about a code");
        tokio::spawn(async move {
            let result = radius::authenticate(&config, &login).await;
            let _ = answers_to.send(LoginAnswer {
                mac,
                user: login.user,
                ip: login.ip,
                result,
                reply,
            });
        });
    }

    /// Carries out a login's answer: an Access-Accept sells its session to the client and
    /// connects it; a reject counts as a wrong code.
    pub(super) async fn finish_login(&mut self, answer: LoginAnswer) {
        let LoginAnswer {
            mac,
            user,
            ip,
            result,
            reply,
        } = answer;
        let result = match result {
            Ok(Outcome::Accept(grant)) => {
                let now = self.now();
                let plan = grant.plan(
                    self.config.radius.default_time_secs,
                    self.config.accounting.bytes_per_mb,
                    now.wall,
                );
                self.telemetry.clients_changed();
                match self.add_session(mac, plan, None, true).await {
                    Ok(sold) => {
                        tracing::info!(%mac, user, session = sold.session.id, "RADIUS login accepted");
                        self.account_login(sold.session.id, mac, user, ip, grant.interim_secs);
                        Ok(self.client_view(mac))
                    }
                    Err(error) => Err(RedeemError::Failed(crate::text::chain_string(&error))),
                }
            }
            Ok(Outcome::Reject(message)) => {
                tracing::info!(%mac, user, ?message, "RADIUS login rejected");
                // A device's own MAC is no guess at a code.
                if !matches!(reply, LoginReply::MacAuth) {
                    self.vouchers.wrong_guess(mac);
                }
                Err(RedeemError::Rejected { message })
            }
            Err(error) if matches!(reply, LoginReply::MacAuth) => {
                tracing::debug!(%mac, error = %crate::text::chain(&error), "a MAC login could not be checked; the device can still use the portal");
                Err(RedeemError::ServerAway(String::new()))
            }
            Err(error) if self.config.radius.away_grant_secs > 0 => {
                tracing::warn!(%mac, user, error = %crate::text::chain(&error), "no RADIUS server answered; the code is let in unchecked (radius.away_grant_secs)");
                self.away_grant(mac, user, ip).await
            }
            Err(error) => {
                tracing::warn!(%mac, error = %crate::text::chain(&error), "a RADIUS login could not be checked");
                Err(RedeemError::ServerAway(crate::text::chain_string(&error)))
            }
        };
        match reply {
            LoginReply::Api(reply) => self.answer_once_saved(reply, result),
            LoginReply::Portal(reply) => self.answer_once_saved(
                reply,
                result.map(|client| Redeemed {
                    client,
                    cookie: None,
                }),
            ),
            LoginReply::MacAuth => {}
        }
    }
}

/// How often a session's Interim-Update goes out when its Access-Accept named no
/// Acct-Interim-Interval.
pub(super) const DEFAULT_INTERIM_SECS: u32 = 300;

impl Control {
    /// Opens the accounting spool at start (RADIUS on) and takes back the RADIUS sessions of
    /// the last run that still exist; the others' state is dropped.
    pub(super) fn open_radius(&mut self) {
        if !self.config.radius.enabled() {
            return;
        }
        let servers = Servers {
            addresses: self.config.radius.acct_servers(),
            ..radius::auth_servers(&self.config.radius)
        };
        match Spool::start(&self.config.store.sqlite_path, servers) {
            Ok((spool, kept)) => {
                let now = self.now();
                for stored in kept {
                    let state = self.engine.state_of(stored.session_id, now);
                    if let Some(
                        crate::sessions::engine::SessionState::Consumed
                        | crate::sessions::engine::SessionState::Expired,
                    ) = state
                    {
                        // It ended while hotspotd was away (the kernel's counters say so).
                        self.radius.sessions.insert(
                            stored.session_id,
                            RadiusSession {
                                stored: stored.clone(),
                                last_sent: Instant::now(),
                            },
                        );
                        self.radius.spool = Some(spool.clone());
                        self.account_stop(stored.session_id, dict::TERMINATE_SESSION_TIMEOUT, now);
                    } else if state.is_some() {
                        self.radius.sessions.insert(
                            stored.session_id,
                            RadiusSession {
                                stored,
                                last_sent: Instant::now(),
                            },
                        );
                    } else {
                        spool.forget(stored.session_id);
                    }
                }
                self.radius.spool = Some(spool);
            }
            Err(error) => {
                tracing::error!(error = %crate::text::chain(&error), "RADIUS accounting is off");
            }
        }
        let port = self.config.radius.coa_port;
        if port != 0 {
            let mut servers = self.config.radius.auth_servers();
            servers.extend(self.config.radius.acct_servers());
            let secret = self.config.radius.secret.as_bytes().to_vec();
            let to_control = self.radius.coa_to.clone();
            tokio::spawn(async move {
                if let Err(error) = radius::coa::listen(port, servers, secret, to_control).await {
                    tracing::error!(error = %crate::text::chain(&error), "RADIUS CoA/Disconnect is off");
                }
            });
        }
    }

    /// A checked CoA/Disconnect request: the RADIUS session it names (Acct-Session-Id, else
    /// User-Name with Calling-Station-Id if given) is ended, or changed: Session-Timeout is the
    /// time left from now, a data limit the bytes left from now, `WISPr` speeds the new speed;
    /// the kernel's grant follows at once.
    pub(super) async fn handle_coa(&mut self, request: CoaRequest) {
        let CoaRequest {
            kind,
            packet,
            reply,
        } = request;
        let text = |kind: u8| {
            packet
                .get(kind)
                .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
        };
        let (acct_id, user, station) = (
            text(dict::ACCT_SESSION_ID),
            text(dict::USER_NAME),
            text(dict::CALLING_STATION_ID)
                .map(|station| station.replace(':', "-").to_ascii_uppercase()),
        );
        let found = self.radius.sessions.iter().find(|(_, session)| {
            let stored = &session.stored;
            match &acct_id {
                Some(id) => *id == stored.acct_session_id,
                None => {
                    user.as_ref().is_some_and(|user| *user == stored.user)
                        && station.as_ref().is_none_or(|station| {
                            *station == stored.mac.replace(':', "-").to_ascii_uppercase()
                        })
                }
            }
        });
        let Some(id) = found.map(|(id, _)| *id) else {
            tracing::info!(
                ?acct_id,
                ?user,
                "a CoA/Disconnect request names no RADIUS session here"
            );
            let _ = reply.send(Err(dict::ERROR_SESSION_CONTEXT_NOT_FOUND));
            return;
        };
        let result = match kind {
            CoaKind::Disconnect => {
                self.telemetry.clients_changed();
                self.remove_session(id).await.map_err(|error| {
                    tracing::warn!(session = id, error = %crate::text::chain(&error), "a Disconnect-Request could not end its session");
                    dict::ERROR_RESOURCES_UNAVAILABLE
                })
            }
            CoaKind::Change => self.change_session(id, &radius::Grant::of(&packet)).await,
        };
        tracing::info!(
            session = id,
            ?kind,
            ok = result.is_ok(),
            "RADIUS change of authorization"
        );
        let _ = reply.send(result);
    }

    /// Lets a code in unchecked while no server answers (`radius.away_grant_secs`): a time
    /// session at the global speed, accounted as a RADIUS session so the server hears of it.
    async fn away_grant(
        &mut self,
        mac: MacAddr,
        user: String,
        ip: Option<std::net::Ipv4Addr>,
    ) -> Result<ClientView, RedeemError> {
        let now = self.now();
        let grant = radius::Grant {
            time_secs: Some(self.config.radius.away_grant_secs),
            ..radius::Grant::default()
        };
        let plan = grant.plan(
            self.config.radius.default_time_secs,
            self.config.accounting.bytes_per_mb,
            now.wall,
        );
        self.telemetry.clients_changed();
        let sold = self
            .add_session(mac, plan, None, true)
            .await
            .map_err(|error| RedeemError::Failed(crate::text::chain_string(&error)))?;
        self.account_login(sold.session.id, mac, user, ip, None);
        Ok(self.client_view(mac))
    }

    async fn change_session(&mut self, id: SessionId, grant: &radius::Grant) -> Result<(), u32> {
        let bytes_per_mb = self.config.accounting.bytes_per_mb;
        let now = self.now();
        let effects = self
            .engine
            .change(id, now, |data, data_cons_bytes| {
                let mut new = data.clone();
                if let Some(secs) = grant.time_secs {
                    new.time_secs = new.time_cons + secs;
                    if new.kind == crate::sessions::SessionType::Data {
                        new.kind = crate::sessions::SessionType::TimeOrData;
                    }
                }
                if let Some(bytes) = grant.data_bytes {
                    #[expect(
                        clippy::cast_precision_loss,
                        reason = "MB as the record keeps them; exact below 2^53 bytes"
                    )]
                    let total = (data_cons_bytes + bytes) as f64 / bytes_per_mb as f64;
                    new.data_mb = total;
                    if new.kind == crate::sessions::SessionType::Time {
                        new.kind = crate::sessions::SessionType::TimeOrData;
                    }
                }
                let mbits = |bps: u64| i32::try_from(bps.div_ceil(1_000_000)).unwrap_or(i32::MAX);
                if let (Some(down), Some(up)) = (grant.down_bps, grant.up_bps) {
                    new.down_mbits = mbits(down);
                    new.up_mbits = mbits(up);
                    new.use_global_speed = false;
                }
                new
            })
            .map_err(|error| {
                tracing::warn!(session = id, error = %crate::text::chain(&error), "a CoA-Request was refused");
                dict::ERROR_INVALID_REQUEST
            })?;
        self.apply(effects, now).await;
        self.save();
        Ok(())
    }

    /// Keeps a sold session's accounting state; if it runs already, its Start goes out.
    fn account_login(
        &mut self,
        id: SessionId,
        mac: MacAddr,
        user: String,
        ip: Option<std::net::Ipv4Addr>,
        interim_secs: Option<u32>,
    ) {
        // Unique across boxes and restarts: 64 random bits (the session id if /dev/urandom
        // fails, unique on this box).
        let acct_session_id = match radius::client::random::<8>() {
            Ok(bytes) => format!("{:016X}", u64::from_be_bytes(bytes)),
            Err(_) => format!("{id:016X}"),
        };
        let stored = SpooledSession {
            session_id: id,
            user,
            acct_session_id,
            mac: mac.to_string(),
            ip: ip.map(|ip| ip.to_string()).unwrap_or_default(),
            interim_secs: interim_secs.unwrap_or(DEFAULT_INTERIM_SECS),
            base: None,
            started_at: None,
        };
        if let Some(spool) = &self.radius.spool {
            spool.put(stored.clone());
        }
        self.radius.sessions.insert(
            id,
            RadiusSession {
                stored,
                last_sent: Instant::now(),
            },
        );
        let started = self
            .engine
            .session(id)
            .is_some_and(|session| session.data.started_at.is_some());
        if started {
            let now = self.now();
            self.account_start(id, now);
        }
    }

    /// What an engine event means for accounting: a RADIUS session's start sends its Start;
    /// its end (consumed, expired, removed) its Stop.
    pub(super) fn radius_event(&mut self, event: &Event, now: Now) {
        match *event {
            Event::SessionStarted { id, .. } => self.account_start(id, now),
            Event::SessionConsumed { id, .. } | Event::SessionExpired { id, .. } => {
                self.account_stop(id, dict::TERMINATE_SESSION_TIMEOUT, now);
            }
            Event::SessionRemoved { id, .. } => {
                self.account_stop(id, dict::TERMINATE_ADMIN_RESET, now);
            }
            _ => {}
        }
    }

    /// The client's byte totals now: (up, down).
    fn totals_of(&self, mac: &str) -> (u64, u64) {
        let Ok(mac) = mac.parse::<MacAddr>() else {
            return (0, 0);
        };
        self.table.record(mac).map_or((0, 0), |record| {
            (record.totals.up_bytes, record.totals.down_bytes)
        })
    }

    fn account_start(&mut self, id: SessionId, now: Now) {
        let Some(mac) = self
            .radius
            .sessions
            .get(&id)
            .filter(|session| session.stored.base.is_none())
            .map(|session| session.stored.mac.clone())
        else {
            return;
        };
        let base = self.totals_of(&mac);
        let Some(session) = self.radius.sessions.get_mut(&id) else {
            return;
        };
        session.stored.base = Some(base);
        session.stored.started_at = Some(now.wall.timestamp());
        session.last_sent = Instant::now();
        let stored = session.stored.clone();
        if let Some(spool) = &self.radius.spool {
            spool.put(stored.clone());
            spool.send(acct_attributes(
                &stored,
                dict::ACCT_START,
                (0, 0),
                now,
                &self.config.radius.nas_identifier(),
            ));
        }
        tracing::debug!(session = id, "RADIUS accounting started");
    }

    fn account_stop(&mut self, id: SessionId, cause: u32, now: Now) {
        let Some(session) = self.radius.sessions.remove(&id) else {
            return;
        };
        let Some(spool) = self.radius.spool.clone() else {
            return;
        };
        if let Some(used) = self.used(&session.stored) {
            let mut attributes = acct_attributes(
                &session.stored,
                dict::ACCT_STOP,
                used,
                now,
                &self.config.radius.nas_identifier(),
            );
            attributes.push(Attribute::integer(dict::ACCT_TERMINATE_CAUSE, cause));
            spool.send(attributes);
        }
        spool.forget(id);
    }

    /// What a started session's client passed since its Start: (up, down).
    fn used(&self, stored: &SpooledSession) -> Option<(u64, u64)> {
        let (base_up, base_down) = stored.base?;
        let (up, down) = self.totals_of(&stored.mac);
        Some((up.saturating_sub(base_up), down.saturating_sub(base_down)))
    }

    /// Sends the Interim-Updates that are due; after each poll.
    pub(super) fn radius_interims(&mut self, now: Now) {
        let Some(spool) = self.radius.spool.clone() else {
            return;
        };
        let due: Vec<SessionId> = self
            .radius
            .sessions
            .iter()
            .filter(|(_, session)| {
                session.stored.base.is_some()
                    && session.last_sent.elapsed().as_secs()
                        >= u64::from(session.stored.interim_secs)
            })
            .map(|(id, _)| *id)
            .collect();
        if due.is_empty() {
            return;
        }
        let nas_identifier = self.config.radius.nas_identifier();
        for id in due {
            let Some(stored) = self
                .radius
                .sessions
                .get(&id)
                .map(|session| session.stored.clone())
            else {
                continue;
            };
            if let Some(used) = self.used(&stored) {
                spool.send(acct_attributes(
                    &stored,
                    dict::ACCT_INTERIM_UPDATE,
                    used,
                    now,
                    &nas_identifier,
                ));
            }
            if let Some(session) = self.radius.sessions.get_mut(&id) {
                session.last_sent = Instant::now();
            }
        }
    }
}

/// An Accounting-Request's attributes: the status, the session, `used` (up, down) as 64-bit
/// octets (Octets and Gigawords), the time since Start, and Event-Timestamp.
fn acct_attributes(
    stored: &SpooledSession,
    status: u32,
    (up, down): (u64, u64),
    now: Now,
    nas_identifier: &str,
) -> Vec<Attribute> {
    let low = |bytes: u64| u32::try_from(bytes & 0xFFFF_FFFF).unwrap_or(0);
    let high = |bytes: u64| u32::try_from(bytes >> 32).unwrap_or(u32::MAX);
    let timestamp = now.wall.timestamp();
    let session_time = stored
        .started_at
        .map_or(0, |started| timestamp.saturating_sub(started).max(0));
    let mut attributes = vec![
        Attribute::integer(dict::ACCT_STATUS_TYPE, status),
        Attribute::text(dict::USER_NAME, &stored.user),
        Attribute::text(dict::ACCT_SESSION_ID, &stored.acct_session_id),
        Attribute::text(dict::NAS_IDENTIFIER, nas_identifier),
        Attribute::text(dict::CALLED_STATION_ID, nas_identifier),
        Attribute::text(
            dict::CALLING_STATION_ID,
            &stored.mac.replace(':', "-").to_ascii_uppercase(),
        ),
        Attribute::integer(dict::NAS_PORT_TYPE, dict::NAS_PORT_TYPE_WIRELESS),
        Attribute::integer(dict::EVENT_TIMESTAMP, u32::try_from(timestamp).unwrap_or(0)),
        Attribute::integer(
            dict::ACCT_SESSION_TIME,
            u32::try_from(session_time).unwrap_or(u32::MAX),
        ),
        Attribute::integer(dict::ACCT_INPUT_OCTETS, low(up)),
        Attribute::integer(dict::ACCT_INPUT_GIGAWORDS, high(up)),
        Attribute::integer(dict::ACCT_OUTPUT_OCTETS, low(down)),
        Attribute::integer(dict::ACCT_OUTPUT_GIGAWORDS, high(down)),
    ];
    if let Ok(ip) = stored.ip.parse::<std::net::Ipv4Addr>() {
        attributes.push(Attribute::new(dict::FRAMED_IP_ADDRESS, ip.octets()));
    }
    attributes
}

/// How long a device's MAC login waits before it is tried again after a reject or no answer.
const MAC_RETRY: std::time::Duration = std::time::Duration::from_mins(5);

impl Control {
    /// `radius.mac_auth`: each unpaid device seen sending (`seen`: this poll's unpaid
    /// traffic) is asked about by its MAC, at most every [`MAC_RETRY`]; an accept connects it
    /// without the portal.
    pub(super) fn mac_logins(&mut self, seen: &[(MacAddr, hotspotd_common::Usage)]) {
        if !self.config.radius.enabled() || !self.config.radius.mac_auth {
            return;
        }
        for (mac, _) in seen {
            if self.engine.client(*mac).is_some() || self.sharing.holder_of(*mac).is_some() {
                continue;
            }
            if self
                .radius
                .mac_tried
                .get(mac)
                .is_some_and(|at| at.elapsed() < MAC_RETRY)
            {
                continue;
            }
            self.radius.mac_tried.insert(*mac, Instant::now());
            let name = radius::station(*mac);
            self.start_login(*mac, name, LoginReply::MacAuth);
        }
        if self.radius.mac_tried.len() > 100_000 {
            self.radius
                .mac_tried
                .retain(|_, at| at.elapsed() < MAC_RETRY);
        }
    }
}
