//! RADIUS logins on the control task (docs/radius.md): a code that is no local voucher is
//! asked of the RADIUS servers in a task of its own, so the control task goes on meanwhile;
//! the answer comes back here and an Access-Accept becomes the client's session, sold and
//! connected as a voucher's is. Side effects: spawns the round trip; a login sells a session.

use std::collections::BTreeMap;

use tokio::sync::{mpsc, oneshot};

use super::{Control, RedeemBy, RedeemError, Redeemed};
use crate::{
    mac::MacAddr,
    radius::{self, ExchangeError, Login, Outcome},
    sessions::engine::SessionId,
    views::ClientView,
};

/// Who waits for a login's answer: the API (`POST /v1/vouchers/redeem`) or the portal's form.
pub(super) enum LoginReply {
    Api(oneshot::Sender<Result<ClientView, RedeemError>>),
    Portal(oneshot::Sender<Result<Redeemed, RedeemError>>),
}

/// A login's round trip, done.
pub(super) struct LoginAnswer {
    mac: MacAddr,
    user: String,
    result: Result<Outcome, ExchangeError>,
    reply: LoginReply,
}

/// A session a RADIUS server sold: what accounting needs of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct RadiusSession {
    pub(super) user: String,
    pub(super) interim_secs: Option<u32>,
}

/// The logins in flight and the sessions RADIUS sold.
#[derive(Debug)]
pub(super) struct Radius {
    answers_to: mpsc::UnboundedSender<LoginAnswer>,
    answers: Option<mpsc::UnboundedReceiver<LoginAnswer>>,
    pub(super) sessions: BTreeMap<SessionId, RadiusSession>,
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
        Self {
            answers_to,
            answers: Some(answers),
            sessions: BTreeMap::new(),
        }
    }
}

impl Radius {
    /// Where the logins' answers arrive; taken by `run`.
    pub(super) fn take_answers(&mut self) -> Option<mpsc::UnboundedReceiver<LoginAnswer>> {
        self.answers.take()
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
            && self.goes_to_radius(mac, code)
        {
            self.start_login(mac, code.clone(), LoginReply::Portal(reply));
            return;
        }
        let result = self.portal_redeem(mac, by).await;
        self.answer_once_saved(reply, result);
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
                self.client_count.set(None);
                match self.add_session(mac, plan, true).await {
                    Ok(sold) => {
                        tracing::info!(%mac, user, session = sold.session.id, "RADIUS login accepted");
                        self.radius.sessions.insert(
                            sold.session.id,
                            RadiusSession {
                                user,
                                interim_secs: grant.interim_secs,
                            },
                        );
                        Ok(self.client_view(mac))
                    }
                    Err(error) => Err(RedeemError::Failed(crate::text::chain_string(&error))),
                }
            }
            Ok(Outcome::Reject(message)) => {
                tracing::info!(%mac, user, ?message, "RADIUS login rejected");
                self.vouchers.wrong_guess(mac);
                Err(RedeemError::Rejected { message })
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
        }
    }
}
