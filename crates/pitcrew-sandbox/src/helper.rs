//! The sandbox helper: the code a binary linking this crate runs instead of its `main` when
//! `run` re-executes it with [`HELPER_ARG`].
//!
//! Three processes, each a child of the one before:
//!
//! 1. **outer** (child of pitcrew, in pitcrew's namespaces): dies with pitcrew
//!    (`PR_SET_PDEATHSIG`), enters new PID, mount, IPC and (unless network is allowed)
//!    network namespaces, plus a user namespace when not root, forks, waits for `init` and
//!    exits with its status.
//! 2. **init** (PID 1 of the new PID namespace): dies with `outer`, makes mounts private,
//!    mounts a fresh `/proc` and `/dev/shm`, covers [`Policy::hide`] with empty tmpfs,
//!    forks the command, reaps every process of the namespace and exits when the command
//!    has; the kernel then kills whatever is left in the namespace.
//! 3. **command**: default signal handling, the resource limits, no capabilities,
//!    `PR_SET_NO_NEW_PRIVS`, Landlock, then `execvp` of the program.
//!
//! Failures before `execvp` are reported on the status pipe (see [`crate::policy::Report`]).
//! Everything here runs before `main` in a fresh, single-threaded image, so allocating after
//! `fork` is safe.

use std::ffi::{CStr, CString, OsString};
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::raw::{c_char, c_int};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, NetPort, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope,
};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::libc;
use nix::mount::{MsFlags, mount};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::{CloneFlags, unshare};
use nix::sys::prctl;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{Pid, execvp, getegid, geteuid, getpid, getppid, pipe2};

use crate::policy::{HELPER_ARG, Policy, STAGE_EXEC, error_record, limit_values};

/// Registered as an ELF constructor, so it runs in every binary that links this crate (the
/// CLI, benches, other crates' test harnesses) before their `main`. It returns at once
/// unless the first argument is [`HELPER_ARG`]. glibc passes `argc`, `argv` and `envp` to
/// such constructors.
#[cfg(target_env = "gnu")]
#[allow(unsafe_code)]
#[used]
// SAFETY: `.init_array` holds pointers to functions the loader calls once at start-up with
// (argc, argv, envp); `HOOK` has exactly that ABI and touches no uninitialised state.
#[unsafe(link_section = ".init_array")]
pub(crate) static HOOK: extern "C" fn(c_int, *const *const c_char, *const *const c_char) = hook;

#[cfg(target_env = "gnu")]
extern "C" fn hook(argc: c_int, argv: *const *const c_char, _envp: *const *const c_char) {
    if argc < 2 || argv.is_null() {
        return;
    }
    #[allow(unsafe_code)]
    let arg = |i: c_int| -> OsString {
        // SAFETY: glibc hands constructors the process's own argv: `argc` valid pointers to
        // NUL-terminated strings that live for the whole process. `i < argc`.
        let s = unsafe { CStr::from_ptr(*argv.add(i as usize)) };
        OsString::from_vec(s.to_bytes().to_vec())
    };
    if arg(1).as_bytes() != HELPER_ARG.as_bytes() {
        return;
    }
    helper_main(&(2..argc).map(arg).collect::<Vec<_>>())
}

/// Other C libraries (musl) call constructors without arguments: read our own command line.
#[cfg(not(target_env = "gnu"))]
#[allow(unsafe_code)]
#[used]
// SAFETY: `.init_array` holds pointers to functions the loader calls once at start-up;
// `HOOK` takes no arguments, which is valid for any caller convention used there.
#[unsafe(link_section = ".init_array")]
pub(crate) static HOOK: extern "C" fn() = hook;

#[cfg(not(target_env = "gnu"))]
extern "C" fn hook() {
    let Ok(cmdline) = fs::read("/proc/self/cmdline") else {
        return;
    };
    let mut args = cmdline.split(|&b| b == 0);
    args.next();
    if args.next() != Some(HELPER_ARG.as_bytes()) {
        return;
    }
    let mut rest: Vec<OsString> = args.map(|a| OsString::from_vec(a.to_vec())).collect();
    // The command line ends with a NUL, which leaves one empty piece at the end.
    rest.pop();
    helper_main(&rest)
}

/// Makes sure the object holding [`HOOK`] is linked into any binary that can run a confined
/// command: called from `run`.
pub(crate) fn keep_hook() {
    std::hint::black_box(&HOOK);
}

/// The exit code of a helper process that failed before the program ran (the reason is on
/// the status pipe). Same as `env`/`timeout` use for "could not run".
const EXIT_SETUP: i32 = 125;
/// The exit code after a failed `execvp`, as shells use.
const EXIT_EXEC: i32 = 127;

/// Where reports go: the status pipe, or stderr for a helper started by hand.
#[derive(Debug, Clone, Copy)]
struct Reporter(RawFd);

impl Reporter {
    fn send(self, record: &[u8]) {
        let fd = if self.0 >= 0 { self.0 } else { 2 };
        raw_write(fd, record);
    }

    fn fail(self, stage: &str, errno: i32, message: &str, code: i32) -> ! {
        if self.0 >= 0 {
            self.send(&error_record(stage, errno, message));
        } else {
            raw_write(
                2,
                format!("pitcrew sandbox helper: {stage}: {message}\n").as_bytes(),
            );
        }
        exit_now(code)
    }

    fn fail_io(self, stage: &str, err: &io::Error) -> ! {
        self.fail(
            stage,
            err.raw_os_error().unwrap_or(0),
            &err.to_string(),
            EXIT_SETUP,
        )
    }

    fn fail_errno(self, stage: &str, errno: Errno) -> ! {
        self.fail(stage, errno as i32, errno.desc(), EXIT_SETUP)
    }
}

fn helper_main(args: &[OsString]) -> ! {
    let Some((policy, command)) = args.split_first() else {
        Reporter(-1).fail("arguments", 0, "missing policy", EXIT_SETUP)
    };
    let Some(policy) = Policy::decode(policy.as_bytes()) else {
        Reporter(-1).fail("arguments", 0, "malformed policy", EXIT_SETUP)
    };
    let report = Reporter(policy.report_fd);
    if command.is_empty() && !policy.probe {
        report.fail("arguments", 0, "no program given", EXIT_SETUP)
    }
    // argv entries never hold NUL, so this cannot fail.
    let argv: Vec<CString> = command
        .iter()
        .filter_map(|a| CString::new(a.as_bytes()).ok())
        .collect();
    outer(&policy, report, &argv)
}

fn outer(policy: &Policy, report: Reporter, argv: &[CString]) -> ! {
    // Nothing inherited by mistake may reach the program: only 0, 1 and 2 survive its exec
    // (the status pipe too is closed by it; the helper processes themselves never exec).
    close_range_cloexec(3);
    if let Err(e) = prctl::set_pdeathsig(Signal::SIGKILL) {
        report.fail_errno("prctl PR_SET_PDEATHSIG", e)
    }
    // The parent may have died before the line above: then nobody would kill us.
    if getppid().as_raw() as u32 != policy.parent_pid {
        exit_now(EXIT_SETUP)
    }

    let (uid, gid) = (geteuid(), getegid());
    let mut flags = CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWIPC;
    if !policy.network {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if !uid.is_root() {
        flags |= CloneFlags::CLONE_NEWUSER;
    }
    if let Err(e) = unshare(flags) {
        report.fail_errno("unshare (namespaces)", e)
    }
    if !uid.is_root() {
        // Map our own ids to themselves, so files keep their owners; deny setgroups, which
        // an unprivileged gid_map requires.
        for (file, content) in [
            ("/proc/self/setgroups", "deny".to_owned()),
            ("/proc/self/uid_map", format!("{uid} {uid} 1")),
            ("/proc/self/gid_map", format!("{gid} {gid} 1")),
        ] {
            if let Err(e) = fs::write(file, content) {
                report.fail_io(&format!("write {file}"), &e)
            }
        }
    }
    // Only now: an undumpable process's /proc/self files belong to root, so it could not
    // have written its own id maps above.
    let _ = prctl::set_dumpable(false);
    // Held open by us only: when it reads as hung up, we are gone.
    let (life_r, life_w) = match pipe2(OFlag::O_CLOEXEC) {
        Ok(pair) => pair,
        Err(e) => report.fail_errno("pipe", e),
    };
    match fork() {
        Err(e) => report.fail_errno("fork (namespace init)", e),
        Ok(None) => {
            drop(life_w);
            init(policy, report, argv, &life_r)
        }
        Ok(Some(init_pid)) => {
            drop(life_r);
            let status = wait_for(init_pid);
            report.send(format!("I\t{status}\n").as_bytes());
            exit_now(exit_code(status))
        }
    }
}

fn init(policy: &Policy, report: Reporter, argv: &[CString], lifeline: &OwnedFd) -> ! {
    if let Err(e) = prctl::set_pdeathsig(Signal::SIGKILL) {
        report.fail_errno("prctl PR_SET_PDEATHSIG", e)
    }
    let mut fds = [PollFd::new(lifeline.as_fd(), PollFlags::POLLIN)];
    if poll(&mut fds, PollTimeout::ZERO).is_ok_and(|n| n > 0) {
        // Hung up: outer died before we asked to die with it.
        exit_now(EXIT_SETUP)
    }
    // Undumpable: the program cannot open our /proc/1/fd (the status pipe) or memory.
    let _ = prctl::set_dumpable(false);
    let cwd = match std::env::current_dir() {
        Ok(cwd) => cwd,
        Err(e) => report.fail_io("find the working directory", &e),
    };
    if let Err((stage, e)) = setup_mounts(policy) {
        report.fail_io(&stage, &e)
    }
    // Enter the working directory again through the new mounts. Left where it was, a
    // working directory in a hidden tree would keep showing that tree's real contents
    // (unix sockets included) to relative paths; not granted, it does not exist anymore.
    if let Err(e) = std::env::set_current_dir(&cwd) {
        report.fail_io(
            &format!(
                "enter the working directory {} (hidden in the sandbox unless granted)",
                cwd.display()
            ),
            &e,
        )
    }
    let command = match fork() {
        Err(e) => report.fail_errno("fork (command)", e),
        Ok(None) => command(policy, report, argv),
        Ok(Some(pid)) => pid,
    };
    // Reap everything reparented to us until the command itself ends.
    let status = loop {
        match waitpid(None::<Pid>, None) {
            Ok(status) if status.pid() == Some(command) => break raw_status(status),
            Err(Errno::ECHILD) => break 0,
            _ => {}
        }
    };
    report.send(format!("S\t{status}\n").as_bytes());
    exit_now(exit_code(status))
}

/// Private mounts, a fresh `/proc` (this namespace's processes only), a fresh `/dev/shm`
/// and the hidden directories.
fn setup_mounts(policy: &Policy) -> Result<(), (String, io::Error)> {
    let none: Option<&str> = None;
    let fail = |stage: &str| {
        let stage = stage.to_owned();
        move |e: Errno| (stage, io::Error::from(e))
    };
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .map_err(fail("make mounts private"))?;
    let quiet = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        quiet | MsFlags::MS_NOEXEC,
        none,
    )
    .map_err(fail("mount /proc"))?;
    if Path::new("/dev/shm").is_dir() {
        mount(
            Some("tmpfs"),
            "/dev/shm",
            Some("tmpfs"),
            quiet,
            Some("size=64m,mode=1777"),
        )
        .map_err(fail("mount /dev/shm"))?;
    }
    if policy.terminals {
        // A devpts instance of the sandbox's own: its ptys are the only ones it sees.
        mount(
            Some("devpts"),
            "/dev/pts",
            Some("devpts"),
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=0620"),
        )
        .map_err(fail("mount a private /dev/pts"))?;
        mount(
            Some("/dev/pts/ptmx"),
            "/dev/ptmx",
            none,
            MsFlags::MS_BIND,
            none,
        )
        .map_err(fail("bind /dev/pts/ptmx on /dev/ptmx"))?;
    }
    let granted: Vec<&PathBuf> = policy.read.iter().chain(&policy.write).collect();
    for dir in &policy.hide {
        hide(dir, &granted).map_err(|(what, e)| (format!("{what} ({})", dir.display()), e))?;
    }
    Ok(())
}

/// Covers `dir` with an empty tmpfs, then binds back the topmost granted paths beneath it.
fn hide(dir: &Path, granted: &[&PathBuf]) -> Result<(), (&'static str, io::Error)> {
    let beneath: Vec<&Path> = granted
        .iter()
        .map(|p| p.as_path())
        .filter(|p| p.starts_with(dir) && *p != dir)
        .collect();
    let mut keep: Vec<(&Path, OwnedFd, bool)> = Vec::new();
    for &path in &beneath {
        if beneath.iter().any(|&o| o != path && path.starts_with(o)) {
            continue;
        }
        let fd = match open_path(path) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(("open a granted path", e)),
        };
        let is_dir = fs::metadata(path)
            .map_err(|e| ("stat a granted path", e))?
            .is_dir();
        keep.push((path, fd, is_dir));
    }
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        flags,
        Some("size=1m,mode=755"),
    )
    .map_err(|e| ("mount tmpfs over a hidden directory", e.into()))?;
    for (path, fd, is_dir) in keep {
        let made = if is_dir {
            fs::create_dir_all(path)
        } else {
            path.parent()
                .map_or(Ok(()), fs::create_dir_all)
                .and_then(|()| fs::File::create(path).map(drop))
        };
        made.map_err(|e| ("create a mount point", e))?;
        let source = format!("/proc/self/fd/{}", fd.as_raw_fd());
        mount(
            Some(source.as_str()),
            path,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| ("bind a granted path back", e.into()))?;
    }
    Ok(())
}

fn command(policy: &Policy, report: Reporter, argv: &[CString]) -> ! {
    reset_signals();
    for (resource, value) in [
        Resource::RLIMIT_CPU,
        Resource::RLIMIT_AS,
        Resource::RLIMIT_FSIZE,
        Resource::RLIMIT_NPROC,
    ]
    .into_iter()
    .zip(limit_values(&policy.limits))
    {
        if let Some(value) = value {
            let limited = getrlimit(resource).and_then(|(_, hard)| {
                let value = value.min(hard);
                setrlimit(resource, value, value)
            });
            if let Err(e) = limited {
                report.fail_errno("setrlimit", e)
            }
        }
    }
    if let Err(e) = drop_bounding_and_ambient() {
        report.fail_io("drop capabilities", &e)
    }
    if let Err(e) = prctl::set_no_new_privs() {
        report.fail_errno("prctl PR_SET_NO_NEW_PRIVS", e)
    }
    let abi = match landlock(policy) {
        Ok(abi) => abi,
        Err(message) => report.fail("landlock", 0, &message, EXIT_SETUP),
    };
    if let Err(e) = clear_capabilities() {
        report.fail_io("drop capabilities", &e)
    }
    if policy.probe {
        match self_check() {
            Ok(()) => {
                report.send(format!("P\t{abi}\n").as_bytes());
                exit_now(0)
            }
            Err(message) => report.fail("self-check", 0, &message, EXIT_SETUP),
        }
    }
    let err = match argv.first() {
        Some(program) => execvp(program, argv).unwrap_err(),
        None => Errno::ENOENT,
    };
    report.fail(STAGE_EXEC, err as i32, err.desc(), EXIT_EXEC)
}

/// Read-only files under `/dev` a program may open (with the rights of a file beneath).
const DEV_READ: [&str; 2] = ["/dev/random", "/dev/urandom"];
/// Files under `/dev` a program may also write (and truncate, as `> /dev/null` does).
const DEV_READ_WRITE: [&str; 3] = ["/dev/null", "/dev/zero", "/dev/full"];

/// The Landlock ABI whose rights are handled (best effort below it, down to
/// [`MIN_LANDLOCK_ABI`]).
const LANDLOCK_ABI: ABI = ABI::V7;
/// Below ABI 2 (Linux 5.19) files could be linked or renamed out of a granted directory
/// into another (`REFER` is not handled), so a sandbox on such a kernel is refused.
pub(crate) const MIN_LANDLOCK_ABI: i32 = 2;

/// Restricts this process (and what it executes) to the policy's paths; returns the
/// kernel's Landlock ABI.
fn landlock(policy: &Policy) -> Result<i32, String> {
    let abi = kernel_landlock_abi();
    if abi < MIN_LANDLOCK_ABI {
        return Err(describe_landlock_abi(abi));
    }
    let all = AccessFs::from_all(LANDLOCK_ABI);
    let read = AccessFs::from_read(LANDLOCK_ABI);
    let read_file = make_access(&[AccessFs::ReadFile]);
    let read_write_file = make_access(&[
        AccessFs::ReadFile,
        AccessFs::WriteFile,
        AccessFs::Truncate,
        AccessFs::IoctlDev,
    ]);
    let err = |e: landlock::RulesetError| e.to_string();
    let mut ruleset = Ruleset::default()
        .handle_access(all)
        .map_err(err)?
        .scope(Scope::from_all(LANDLOCK_ABI))
        .map_err(err)?;
    let tcp_ports = match (&policy.network, &policy.connect_ports) {
        (false, _) => Some(&[][..]),
        (true, Some(ports)) => {
            // Best effort would silently drop the TCP rules on an older kernel.
            check_net_abi(abi)?;
            Some(ports.as_slice())
        }
        (true, None) => None,
    };
    if tcp_ports.is_some() {
        ruleset = ruleset
            .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)
            .map_err(err)?;
    }
    let mut rules: Vec<(&Path, BitFlags<AccessFs>)> = Vec::new();
    rules.extend(policy.read.iter().map(|p| (p.as_path(), read)));
    rules.extend(policy.write.iter().map(|p| (p.as_path(), all)));
    rules.extend(DEV_READ.iter().map(|p| (Path::new(*p), read_file)));
    rules.extend(
        DEV_READ_WRITE
            .iter()
            .map(|p| (Path::new(*p), read_write_file)),
    );
    rules.push((
        Path::new("/proc"),
        make_access(&[AccessFs::ReadFile, AccessFs::ReadDir]),
    ));
    rules.push((Path::new("/dev/shm"), all));
    if policy.terminals {
        // The private instance mounted by `setup_mounts`, never the machine's.
        rules.push((Path::new("/dev/ptmx"), read_write_file));
        rules.push((Path::new("/dev/tty"), read_write_file));
        rules.push((
            Path::new("/dev/pts"),
            read_write_file | make_access(&[AccessFs::ReadDir]),
        ));
    }
    let mut created = ruleset.create().map_err(err)?;
    for (path, access) in rules {
        let meta = match fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let access = if meta.is_dir() {
            access
        } else {
            access & AccessFs::from_file(LANDLOCK_ABI)
        };
        let fd = PathFd::new(path).map_err(|e| e.to_string())?;
        created = created
            .add_rule(PathBeneath::new(fd, access))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    for &port in tcp_ports.unwrap_or_default() {
        created = created
            .add_rule(NetPort::new(port, AccessNet::ConnectTcp))
            .map_err(|e| format!("TCP port {port}: {e}"))?;
    }
    let status = created.restrict_self().map_err(err)?;
    if status.ruleset == RulesetStatus::NotEnforced {
        return Err("the kernel did not enforce the Landlock ruleset".to_owned());
    }
    Ok(abi)
}

/// The Landlock ABI that filters TCP by port (Linux 6.7).
const NET_LANDLOCK_ABI: i32 = 4;

/// Whether a kernel with Landlock ABI `abi` can enforce `connect_only_to`.
pub(crate) fn check_net_abi(abi: i32) -> Result<(), String> {
    if abi >= NET_LANDLOCK_ABI {
        return Ok(());
    }
    let have = if abi < 0 {
        "no Landlock".to_owned()
    } else {
        format!("Landlock ABI {abi}")
    };
    Err(format!(
        "allowing TCP to some ports only needs Landlock ABI {NET_LANDLOCK_ABI} (Linux 6.7); \
         this kernel has {have}"
    ))
}

fn make_access(rights: &[AccessFs]) -> BitFlags<AccessFs> {
    rights.iter().fold(BitFlags::empty(), |acc, &r| acc | r)
}

/// The kernel's Landlock ABI version, or a negative errno (`EOPNOTSUPP`: disabled at boot,
/// `ENOSYS`: not built in).
#[allow(unsafe_code)]
pub(crate) fn kernel_landlock_abi() -> i32 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: the documented version query: NULL attributes, size 0, the VERSION flag. It
    // reads and writes no memory.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if v < 0 { -Errno::last_raw() } else { v as i32 }
}

pub(crate) fn describe_landlock_abi(abi: i32) -> String {
    match abi {
        a if a == -libc::EOPNOTSUPP => {
            "Landlock is built into this kernel but disabled (add `landlock` to the `lsm=` boot \
             parameter)"
                .to_owned()
        }
        a if a < 0 => "this kernel has no Landlock support (Linux 5.19 or later needed)".to_owned(),
        a => format!(
            "this kernel's Landlock ABI is {a}; at least {MIN_LANDLOCK_ABI} (Linux 5.19) is needed"
        ),
    }
}

/// Empties the capability bounding set (so nothing executed, even as root or setuid, can
/// gain a capability) and the ambient set. Needs `CAP_SETPCAP`, so it runs before
/// [`clear_capabilities`].
#[allow(unsafe_code)]
fn drop_bounding_and_ambient() -> io::Result<()> {
    let last = fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<libc::c_ulong>().ok())
        .unwrap_or(63);
    for cap in 0..=last {
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } != 0 {
            let err = io::Error::last_os_error();
            // EINVAL: past the kernel's last capability (only when cap_last_cap was unknown).
            if err.raw_os_error() != Some(libc::EINVAL) {
                return Err(err);
            }
        }
    }
    // SAFETY: prctl with integer arguments only.
    if unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    } != 0
    {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINVAL) {
            return Err(err);
        }
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Sets the effective, permitted and inheritable capability sets to empty.
#[allow(unsafe_code)]
fn clear_capabilities() -> io::Result<()> {
    let header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capset reads one header and two data structs (version 3), both valid here.
    if unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// What the probe checks from inside, after confinement: it is the first process of a fresh
/// PID namespace, Landlock refuses what was not granted, and no capability is left.
fn self_check() -> Result<(), String> {
    if getpid().as_raw() != 2 {
        return Err(format!("not in a fresh PID namespace (pid {})", getpid()));
    }
    match fs::read_dir("/") {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {}
        other => return Err(format!("Landlock did not refuse listing `/`: {other:?}")),
    }
    let status = fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(str::trim);
    if cap_eff.is_none_or(|c| c.bytes().any(|b| b != b'0')) {
        return Err(format!("capabilities left: CapEff {cap_eff:?}"));
    }
    Ok(())
}

/// Default disposition for every signal and an empty signal mask, as a fresh program
/// expects.
#[allow(unsafe_code)]
fn reset_signals() {
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: SIG_DFL is always a valid disposition; errors (reserved signals) are
        // ignored.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
    // SAFETY: an empty, initialised set; the old mask is not requested.
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// Sets close-on-exec on every descriptor from `first` up.
#[allow(unsafe_code)]
fn close_range_cloexec(first: libc::c_uint) {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: integer arguments only; on failure (kernels before 5.11) nothing changes.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        );
    }
}

fn open_path(path: &Path) -> io::Result<OwnedFd> {
    let fd = nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    Ok(fd)
}

/// `fork`: `None` in the child, the child's pid in the parent.
#[allow(unsafe_code)]
fn fork() -> Result<Option<Pid>, Errno> {
    // SAFETY: the helper is single-threaded (it runs before `main`, and no constructor starts
    // threads), so the child may do anything the parent could.
    match unsafe { libc::fork() } {
        -1 => Err(Errno::last()),
        0 => Ok(None),
        pid => Ok(Some(Pid::from_raw(pid))),
    }
}

/// Waits for `pid`; its raw wait status.
fn wait_for(pid: Pid) -> i32 {
    loop {
        match waitpid(pid, None) {
            Ok(status) if status.pid() == Some(pid) => return raw_status(status),
            Err(Errno::EINTR) | Ok(_) => {}
            Err(_) => return EXIT_SETUP << 8,
        }
    }
}

/// Back to the raw `wait` status, which is what the report carries.
fn raw_status(status: WaitStatus) -> i32 {
    match status {
        WaitStatus::Exited(_, code) => (code & 0xff) << 8,
        WaitStatus::Signaled(_, sig, core) => sig as i32 | if core { 0x80 } else { 0 },
        _ => 0,
    }
}

/// The exit code that stands for a raw status: the code, or 128 + the signal.
fn exit_code(raw: i32) -> i32 {
    if raw & 0x7f == 0 {
        (raw >> 8) & 0xff
    } else {
        128 + (raw & 0x7f)
    }
}

#[allow(unsafe_code)]
fn raw_write(fd: RawFd, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: writes from a valid slice; a bad descriptor only yields an error.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 && Errno::last() == Errno::EINTR {
            continue;
        }
        if n <= 0 {
            return;
        }
        bytes = &bytes[n as usize..];
    }
}

#[allow(unsafe_code)]
fn exit_now(code: i32) -> ! {
    // SAFETY: ends the process without running the parent image's exit handlers, which
    // belong to the process we were forked or executed from.
    unsafe { libc::_exit(code) }
}
