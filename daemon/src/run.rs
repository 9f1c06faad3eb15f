//! Wires the daemon together: eBPF programs → control task (accounting) → API, and takes the
//! daemon apart again in the reverse order when `shutdown` fires, leaving the kernel's state
//! (programs, grants, counters, speed-limit trees) to enforce until the next start.
//! [`release`] is the one way to take that state away (`hotspotd --release`).

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{
    net::{TcpListener, UnixListener},
    sync::watch,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    alerts::Alerts,
    api::{self, ListenError},
    bpf::{BpfError, Kernel},
    config::Config,
    control::{self, Command, Control, ControlError, Parts},
    events::{self, Events},
    netlink::{Netlink, NetlinkError},
    shaping::{Shaper, ShapingError},
    store::{SessionStore, Store, StoreError},
    watch::{mac_moves, neighbour_overflow},
};

/// How long the kernel's jiffies are watched to learn its `HZ`: long enough to tell 100, 250,
/// 300 and 1000 apart by a tick.
const HZ_SAMPLE: Duration = Duration::from_millis(50);

async fn kernel_hz(kernel: &Kernel) -> Result<u32, BpfError> {
    let (start_jiffies, started) = (kernel.jiffies()?, Instant::now());
    tokio::time::sleep(HZ_SAMPLE).await;
    let ticks = kernel.jiffies()?.saturating_sub(start_jiffies);
    let hz = crate::accounting::nearest_hz(ticks, started.elapsed());
    tracing::debug!(hz, "kernel clock");
    Ok(hz)
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Bpf(#[from] BpfError),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error(transparent)]
    Portal(#[from] crate::portal::PortalError),
    #[error(transparent)]
    Redirect(#[from] crate::portal::redirect::RedirectListenError),
    #[error(transparent)]
    SteeringRoutes(#[from] crate::portal::routes::RoutesError),
    #[error(transparent)]
    Theme(#[from] crate::portal::ThemeError),
    #[error("cannot draw the portal's CSRF key from /dev/urandom")]
    CsrfKey(#[source] std::io::Error),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    VoucherKey(#[from] crate::vouchers::KeyError),
    #[error("speed limits cannot be set up")]
    Shaping(#[from] ShapingError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a hotspotd task failed")]
    Task(#[from] tokio::task::JoinError),
}

/// The portal's listeners on the LAN: the portal itself, and where unpaid clients' web
/// requests are steered to be redirected to it.
struct FrontDoor {
    portal: crate::portal::Listeners,
    redirect: [TcpListener; 2],
    theme: crate::portal::Theme,
    csrf: crate::portal::CsrfKey,
    /// The RFC 8908 answer's own handle on the kernel's maps, and its clock's rate.
    reader: crate::bpf::KernelReader,
    hz: u32,
}

/// Opens the portal's listeners and has the programs steer unpaid clients' web traffic to
/// them, with the policy routes that deliver it to the box; with `portal.mode = "off"`, takes
/// the steering (and an earlier run's routes) away instead. Before the programs are attached,
/// so the first packet already meets the configured front door.
async fn open_front_door(
    config: &Config,
    kernel: &mut Kernel,
    theme: crate::portal::Theme,
    csrf: crate::portal::CsrfKey,
    hz: u32,
) -> Result<Option<FrontDoor>, RunError> {
    let lan = &config.network.lan_interface;
    if config.portal.mode == crate::config::PortalMode::Off {
        kernel.steer_to_portal(None::<[&TcpListener; 2]>)?;
        crate::portal::routes::remove().await?;
        return Ok(None);
    }
    let portal = crate::portal::Listeners::bind(config)?;
    let redirect = crate::portal::redirect::bind(lan)?;
    crate::portal::routes::install(lan).await?;
    kernel.steer_to_portal(Some([&redirect[0], &redirect[1]]))?;
    let reader = Kernel::reader(&config.kernel.pin_dir)?;
    Ok(Some(FrontDoor {
        portal,
        redirect,
        theme,
        csrf,
        reader,
        hz,
    }))
}

/// What the tasks beside the control task are handed.
struct Beside {
    commands: control::Commands,
    events: Events,
    alerts: Arc<crate::alerts::Alerts>,
    shutdown: CancellationToken,
}

impl Beside {
    /// The listeners beside the API socket: the API over TCP, and the portal on the LAN.
    fn listen(
        &self,
        tasks: &TaskTracker,
        config: &Config,
        tcp: Option<(tokio::net::TcpListener, api::TcpAccess)>,
        front_door: Option<FrontDoor>,
        configs: watch::Receiver<Arc<Config>>,
    ) {
        if let Some((tcp_listener, access)) = tcp {
            tracing::info!(address = %config.api.tcp_listen, "the API also serves TCP, with a token, and the dashboard at /dashboard");
            tasks.spawn(api::serve_tcp(
                tcp_listener,
                access,
                Arc::clone(&self.alerts),
                self.commands.clone(),
                self.events.clone(),
                self.shutdown.clone(),
            ));
        }
        if let Some(front_door) = front_door {
            let interface = &config.network.lan_interface;
            tracing::info!(%interface, port = config.portal.listen_port, "the portal serves its pages and the RFC 8908 API on the LAN, and unpaid clients' web requests are sent to it");
            if front_door.portal.serves_https() {
                tracing::info!(%interface, port = config.portal.tls_port, cert = %config.portal.tls_cert.display(), "the portal also serves HTTPS");
            }
            let captive = crate::portal::CaptiveSource::new(
                front_door.reader,
                front_door.hz,
                configs.clone(),
            );
            let site = crate::portal::Site::new(
                self.commands.clone(),
                front_door.theme,
                front_door.csrf,
                captive,
            );
            tasks.spawn(crate::portal::serve(
                front_door.portal,
                crate::portal::router(site),
                configs.clone(),
                self.shutdown.clone(),
            ));
            tasks.spawn(crate::portal::redirect::serve(
                front_door.redirect,
                configs,
                self.shutdown.clone(),
            ));
        }
    }

    /// The event hook and the watchers of the LAN beside the sessions.
    fn watch(&self, tasks: &TaskTracker, config: &Config, lan_ifindex: u32, lan_is_bridge: bool) {
        let lan = &config.network.lan_interface;
        if !config.events.exec.is_empty() {
            tasks.spawn(events::exec_hooks(
                config.events.exec.clone(),
                config.events.exec_timeout(),
                self.events.subscribe(),
                self.shutdown.clone(),
            ));
        }
        if lan_is_bridge {
            tasks.spawn(mac_moves::watch(
                lan.clone(),
                lan_ifindex,
                self.events.clone(),
                Arc::clone(&self.alerts),
                self.shutdown.clone(),
            ));
        } else {
            tracing::debug!(interface = %lan, "the LAN interface is not a bridge: MAC moves between ports are not watched");
        }
        tasks.spawn(neighbour_overflow::watch(
            Arc::clone(&self.alerts),
            self.shutdown.clone(),
        ));
    }
}

/// Runs hotspotd until `shutdown` is cancelled. Returns once the last save is done and the API
/// socket is gone; the programs stay attached (see [`release`]).
pub async fn run(config: Arc<Config>, shutdown: CancellationToken) -> Result<(), RunError> {
    // Nobody sends on it: the configuration never changes.
    let (_keep, reloads) = watch::channel(Arc::clone(&config));
    run_reloadable(config, shutdown, reloads).await
}

/// [`run`], taking new configurations (validated, e.g. on SIGHUP) from `reloads`.
pub async fn run_reloadable(
    config: Arc<Config>,
    shutdown: CancellationToken,
    mut reloads: watch::Receiver<Arc<Config>>,
) -> Result<(), RunError> {
    let lan = config.network.lan_interface.clone();
    // Read first: a broken theme stops the start before anything is attached.
    let theme = crate::portal::Theme::load(&config.portal.theme_dir)?;
    let csrf = crate::portal::CsrfKey::random().map_err(RunError::CsrfKey)?;
    let (kernel, netlink, lan_ifindex, hz, shaper) = prepare_kernel(&config).await?;
    let lan_is_bridge = netlink.is_bridge(&lan).await.unwrap_or_else(|error| {
        tracing::warn!(error = %crate::text::chain(&error), interface = %lan, "cannot tell whether the LAN interface is a bridge; MAC moves between its ports are not watched");
        false
    });

    let sqlite_path = config.store.sqlite_path.clone();
    let store: Arc<dyn SessionStore> =
        Arc::new(tokio::task::spawn_blocking(move || Store::open(&sqlite_path)).await??);
    let key_path = crate::vouchers::VoucherKey::path_for(&config.store.sqlite_path);
    let (voucher_key, key_created) = crate::vouchers::VoucherKey::load_or_create(&key_path)?;
    if key_created
        && store
            .load_all()
            .vouchers
            .iter()
            .any(|voucher| voucher.stage == crate::vouchers::Stage::Unused)
    {
        tracing::error!(path = %key_path.display(), "the voucher key was missing and a new one was made: the unused vouchers in the database cannot be redeemed; restore the key from a backup and restart, or revoke them and print new ones");
    }
    // Sessions and grants are restored before the programs are attached (or take over from a
    // previous run's), so the gate is right from the first packet.
    let events = Events::default();
    let alerts = Arc::new(Alerts::default());
    let parts = Parts {
        kernel,
        netlink,
        lan_ifindex,
        hz,
        store: store.clone(),
        events: events.clone(),
        alerts: Arc::clone(&alerts),
        shaper,
        voucher_key,
    };
    let mut control = Control::start(Arc::clone(&config), parts).await?;
    let front_door = open_front_door(&config, control.kernel_mut(), theme, csrf, hz).await?;
    control.kernel_mut().attach(&lan)?;
    tracing::info!(interface = %lan, "programs attached");
    give_back_start_memory();

    let (listener, tcp) = listen(&config).await?;
    let (commands, command_queue) = control::channel();
    let watchdog_commands = commands.clone();
    let reload_commands = commands.clone();
    let configs = reloads.clone();
    let forward_reloads = async move {
        while reloads.changed().await.is_ok() {
            let config = Arc::clone(&reloads.borrow_and_update());
            if reload_commands
                .tell(Command::Reload { config })
                .await
                .is_err()
            {
                break;
            }
        }
    };
    let tasks = TaskTracker::new();
    let api_task = tasks.spawn(api::serve(
        listener,
        config.api.socket.clone(),
        commands.clone(),
        events.clone(),
        shutdown.clone(),
    ));
    let beside = Beside {
        commands,
        events: events.clone(),
        alerts: Arc::clone(&alerts),
        shutdown: shutdown.clone(),
    };
    beside.listen(&tasks, &config, tcp, front_door, configs);
    beside.watch(&tasks, &config, lan_ifindex, lan_is_bridge);
    let control_task = tasks.spawn(control.run(command_queue, shutdown.clone()));
    let reload_task = tokio::spawn(forward_reloads);
    tasks.close();
    tracing::info!(socket = %config.api.socket.display(), "hotspotd is serving");
    let notifier = crate::notify::serving(watchdog_commands, shutdown.clone());

    let kernel = control_task.await??;
    // STOPPING=1 went out when shutdown began; this only makes sure it is not lost.
    notifier.await?;
    reload_task.abort();
    api_task.await?;
    close(&store, kernel, &lan).await;
    Ok(())
}

/// Closes the store (its last write) and leaves the kernel's state as a crash would: the
/// programs stay attached through their pinned links, grants and counters stay pinned, and the
/// speed-limit trees and the IFB stay. A stop is most often the first half of a restart (an
/// upgrade, `systemctl restart`) or is followed by a start that fails (a bad configuration):
/// detaching would let every client through for free until a daemon is back, and forever if
/// none comes. The next start takes all of it over and bills what passed meanwhile from the
/// counters, as after a crash. `hotspotd --release` frees the LAN on purpose.
async fn close(store: &Arc<dyn SessionStore>, kernel: Kernel, lan: &str) {
    if let Err(error) = store.close().await {
        tracing::error!(
            error = %crate::text::chain(&error),
            "stopping with changes the disk did not take: the next start bills the traffic and time used since the last save from the kernel's counters; sessions sold or removed since then are lost"
        );
    }
    kernel.leave_attached();
    tracing::info!(
        interface = %lan,
        "stopped; the programs stay attached and enforce the sessions until the next start ('hotspotd --release' detaches them)"
    );
}

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error(
        "hotspotd is running (its API answers on {socket}): stop it first ('systemctl stop hotspotd'), then run 'hotspotd --release' again"
    )]
    Running { socket: PathBuf },
    #[error(transparent)]
    Bpf(#[from] BpfError),
    #[error(
        "the programs are detached, but the speed-limit trees cannot be removed: run 'hotspotd --release' again"
    )]
    Shaping(#[source] ShapingError),
    #[error(
        "the programs are detached, but the portal's policy routes cannot be removed: run 'hotspotd --release' again"
    )]
    SteeringRoutes(#[source] crate::portal::routes::RoutesError),
}

/// Frees the LAN of what stopped or crashed daemons left in the kernel: detaches the programs
/// (so every client gets through, ungated and uncounted), removes the pinned grants and
/// counters and the speed-limit trees, and deletes the IFB if hotspotd made it. For removing
/// hotspotd from a box; a restart must not do this. Refuses while a daemon serves
/// `api.socket`. Returns whether any pinned state was found.
pub async fn release(config: &Config) -> Result<bool, ReleaseError> {
    // A socket file a killed daemon left refuses connections: only a running daemon answers.
    if tokio::net::UnixStream::connect(&config.api.socket)
        .await
        .is_ok()
    {
        return Err(ReleaseError::Running {
            socket: config.api.socket.clone(),
        });
    }
    let lan = &config.network.lan_interface;
    // Programs first: the ingress program redirects uploads into the IFB.
    let found = crate::bpf::release(&config.kernel.pin_dir, lan)?;
    Shaper::release(lan, &config.network.ifb_interface)
        .await
        .map_err(ReleaseError::Shaping)?;
    let routes_found = crate::portal::routes::remove()
        .await
        .map_err(ReleaseError::SteeringRoutes)?;
    Ok(found || routes_found)
}

/// Returns to the kernel the heap the start freed. Loading the programs parses the kernel's
/// BTF (about 10 MB, freed at once); an allocation that outlives it higher in the heap keeps
/// glibc from shrinking the heap below it, and the free pages stayed resident for the
/// daemon's life: 20 MiB at 0 clients (BENCHMARKS.md).
fn give_back_start_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free pages of the allocator's own heaps to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// What the control loop needs from the kernel before any program is attached: the maps
/// loaded (or a previous run's taken over), the box's addresses and the walled garden in
/// them, the kernel's tick rate, and the HTB trees with the IFB that uploads are redirected
/// into — all before any grant names a class or the programs see a packet, so nothing is
/// billed, blocked or shaped wrongly.
async fn prepare_kernel(config: &Config) -> Result<(Kernel, Netlink, u32, u32, Shaper), RunError> {
    let lan = &config.network.lan_interface;
    let lan_ifindex = nix::net::if_::if_nametoindex(lan.as_str())
        .map_err(|_| BpfError::NoInterface { iface: lan.clone() })?;
    let mut kernel = Kernel::load(&config.kernel.pin_dir)?;
    let netlink = Netlink::open()?;
    let addrs = netlink.local_addresses().await?;
    kernel.sync_box_addresses(&addrs, config, lan_ifindex)?;
    kernel.set_walled_garden(&config.network.walled_garden)?;
    let hz = kernel_hz(&kernel).await?;
    let ifb = &config.network.ifb_interface;
    let mut shaper = Shaper::setup(lan, ifb, crate::control::global_rates(config)).await?;
    shaper.set_classes_ready(crate::control::classes_ready(config));
    tracing::info!(interface = %lan, ifb = %ifb, leaf = %shaper.leaf(), "speed limits ready");
    if let Some(program) = kernel.upload_filter_program()? {
        crate::bpf::ensure_clsact(lan);
        shaper.route_uploads_to_ifb(program).await?;
    }
    kernel.set_ifb(shaper.ifb_ifindex())?;
    Ok((kernel, netlink, lan_ifindex, hz, shaper))
}

/// The API's listeners: the Unix socket, and the loopback TCP port with its token if
/// configured.
async fn listen(
    config: &Config,
) -> Result<(UnixListener, Option<(TcpListener, api::TcpAccess)>), RunError> {
    let listener = api::listen(&config.api.socket).await?;
    let tcp = match config.api.tcp_address() {
        Some(address) => {
            let access = api::TcpAccess {
                token: api::read_token(&config.api.token_file)?,
                logins: crate::dashboard::logins::Logins::random()
                    .map_err(api::ListenError::LoginKey)?,
                lan_interface: config.network.lan_interface.clone(),
            };
            let tcp_listener = TcpListener::bind(address)
                .await
                .map_err(|source| api::ListenError::Tcp { address, source })?;
            Some((tcp_listener, access))
        }
        None => None,
    };
    Ok((listener, tcp))
}
