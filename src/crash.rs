//! Crash reporting: a fatal signal or a panic ends the process with a report a person can read.
//!
//! The server must never limp on half-dead, and when it dies the operator must see where. So:
//!
//! - **Fatal signals** (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT) print one line naming the signal
//!   and the thread, a line on the cause, and a symbolised backtrace, then the default action is
//!   restored and the signal re-raised, so the process still dies *by that signal* (exit status
//!   128+N in a shell, a core dump if enabled).
//! - **A panic in any thread** prints the thread, message, location and backtrace, then aborts the
//!   whole process: with a dead logic thread the net thread would otherwise keep accepting
//!   connections that nobody answers. The SIGABRT of that abort ends the process quietly (the
//!   panic report already said everything).
//! - SIGINT/SIGTERM are not handled here: they are the net thread's graceful shutdown.
//!
//! The handler runs on an alternate signal stack, so a stack overflow (which leaves no room on
//! the thread's own stack) is reported too, as `stack overflow`. Linux gives every new thread no
//! alternate stack of its own, and std's is only a few KiB, too small to symbolise a backtrace, so
//! **every thread must call [`thread_started`] first thing** ([`install`] covers the main thread).
//! A thread that forgot still dies by the right signal with the first line printed, and a note
//! saying the trace was skipped.
//!
//! # What runs inside the signal handler, and what is async-signal-safe
//!
//! Async-signal-safe (POSIX, or a plain Linux system call): `write(2)` to fd 2 (we never use
//! `std::io::stderr`, whose lock another thread may hold), `gettid`, `getpid`, `prctl`,
//! `sigaltstack`, `sigaction`, `sigprocmask`, `raise`, `alarm`, `nanosleep`, atomics, reads of
//! const-initialised thread-locals without destructors, and `core::fmt` into a stack buffer (it
//! never allocates).
//!
//! Not async-signal-safe: walking the stack (`_Unwind_Backtrace` takes the dynamic loader's lock
//! and may allocate) and symbolising (the `backtrace` crate allocates and reads the executable's
//! debug info). There is no safe way to print function names, and the process is going down
//! anyway, so we accept the risk and bound it:
//!
//! - a **once-guard** (`REPORTER`) lets one thread report; a second thread that crashes at the
//!   same time waits for the first one to kill the process, and a crash *inside* the report (same
//!   thread) prints one line and kills the process at once instead of waiting for itself;
//! - a **watchdog** (`alarm`) kills the process with the original signal if the report has not
//!   finished after `REPORT_TIMEOUT_SECS`, e.g. because the crash happened inside `malloc` and
//!   symbolising deadlocks on the allocator's lock;
//! - the fatal signals are blocked while the handler runs, so a fault inside it makes the kernel
//!   kill the process with that signal rather than recurse.
//!
//! The backtrace crate's `*_unsynchronized` functions are used everywhere here, because the
//! synchronised ones take a global lock the crashed thread may hold. Our once-guard is what
//! serialises them: every use of them in this module happens while holding it.

use std::cell::{Cell, RefCell};
use std::ffi::c_void;
use std::fmt::{self, Write as _};
use std::io;
use std::mem::MaybeUninit;
use std::panic::{self, AssertUnwindSafe, PanicHookInfo};
use std::ptr;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering::SeqCst};

use libc::c_int;
use signal_hook::low_level::{emulate_default_handler, signal_name};

/// The signals that mean "this process is broken": reported, then re-raised.
const FATAL_SIGNALS: [c_int; 5] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGABRT,
];

/// Usable size of each thread's alternate signal stack. Symbolising (gimli parsing DWARF) needs
/// tens of KiB of stack; the pages are only touched when a crash is reported, so generous costs
/// nothing but address space.
const ALT_STACK_SIZE: usize = 256 * 1024;

/// Most distinct frames kept for a report. Runs of one frame (recursion) count once, so even a
/// stack overflow fits; anything deeper is counted, not printed.
const MAX_FRAMES: usize = 128;

/// Where this crate was built from: stripped from file names in backtraces.
const SOURCE_TREE: &str = env!("CARGO_MANIFEST_DIR");

/// How long a report may take before the watchdog kills the process without it.
const REPORT_TIMEOUT_SECS: u32 = 10;

/// Kernel `si_code` values (`<asm-generic/siginfo.h>`) that the `libc` crate does not export.
const SEGV_MAPERR: c_int = 1;
const SEGV_ACCERR: c_int = 2;
const FPE_INTDIV: c_int = 1;
const FPE_INTOVF: c_int = 2;
const ILL_ILLOPC: c_int = 1;
const ILL_ILLOPN: c_int = 2;

/// Thread id (`gettid`) of the thread printing a crash report, 0 if none: the once-guard.
static REPORTER: AtomicI32 = AtomicI32::new(0);

/// The signal the process will die by once the current report is printed; the watchdog and a
/// crash inside the report re-raise it.
static REPORTED_SIGNAL: AtomicI32 = AtomicI32::new(libc::SIGABRT);

/// Set by the panic hook just before it aborts, so the SIGABRT that follows ends the process
/// without a second, confusing report.
static ABORT_AFTER_PANIC: AtomicBool = AtomicBool::new(false);

/// `RUST_BACKTRACE=full`: print every frame with its address, runtime and handler frames too.
static FULL_TRACE: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Addresses around the low end of this thread's stack: a fault there is a stack overflow.
    static STACK_GUARD: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
    /// This thread's alternate signal stack, unmapped when the thread exits.
    static ALT_STACK: RefCell<Option<AltStack>> = const { RefCell::new(None) };
    /// True while [`catch_panic`] runs on this thread: a panic is reported but not fatal.
    static CATCHING: Cell<bool> = const { Cell::new(false) };
}

/// Installs the fatal-signal handlers and the panic hook, and gives the calling (main) thread its
/// signal stack. Call it first thing in `main`; later calls do nothing.
pub fn install() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let full = std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v == "full");
        FULL_TRACE.store(full, SeqCst);
        thread_started();
        panic::set_hook(Box::new(on_panic));
        for sig in FATAL_SIGNALS {
            if let Err(e) = set_handler(sig, on_fatal_signal) {
                eprintln!("crash: cannot handle {}: {e}", name(sig));
            }
        }
    });
}

/// Gives the calling thread an alternate signal stack big enough for a crash report, and notes
/// where its stack ends (to recognise a stack overflow). Call it first thing in every thread the
/// server spawns; calling it again on the same thread does nothing.
pub fn thread_started() {
    STACK_GUARD.with(|g| g.set(stack_guard_range()));
    ALT_STACK.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.is_none() {
            match AltStack::install() {
                Ok(stack) => *slot = Some(stack),
                Err(e) => eprintln!(
                    "crash: no signal stack for this thread ({e}); a crash on it will be reported \
                     without a backtrace"
                ),
            }
        }
    });
}

/// Runs `f`, turning a panic on this thread into `Err(message)` instead of aborting the process.
///
/// The panic is still reported with its backtrace. Only the self-test runner uses this, so that
/// one failing self-test does not hide the results of the others; a panic on any other thread
/// (including the server threads a self-test starts) still aborts the process.
pub fn catch_panic<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    let outer = CATCHING.replace(true);
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    CATCHING.set(outer);
    result.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic with a non-string payload".into())
    })
}

// ---------------------------------------------------------------------------------------------
// The handlers.

/// The fatal-signal handler. Never returns: it reports, then kills the process with `sig`.
extern "C" fn on_fatal_signal(sig: c_int, info: *mut libc::siginfo_t, _ctx: *mut c_void) {
    match claim() {
        Claim::Won => {}
        Claim::Recursive => {
            // The report (or the panic report before this abort) crashed or aborted itself.
            if !(sig == libc::SIGABRT && ABORT_AFTER_PANIC.load(SeqCst)) {
                let mut out = Stderr::new();
                let _ = writeln!(
                    out,
                    "fatal signal {} while printing the crash report above",
                    name(sig)
                );
            }
            die(REPORTED_SIGNAL.load(SeqCst));
        }
    }
    REPORTED_SIGNAL.store(sig, SeqCst);
    start_watchdog();
    let mut out = Stderr::new();
    let mut thread = [0u8; 16];
    let thread = thread_name(&mut thread);
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let info = unsafe { &*info };
    let cause = Cause::of(sig, info);
    let _ = writeln!(
        out,
        "fatal signal {} ({}) in thread '{thread}'",
        name(sig),
        cause.summary()
    );
    let _ = cause.detail(&mut out);
    // The lines so far need nothing unsafe: get them out before the parts that might fail.
    out.flush();
    if has_room_for_report() {
        let _ = writeln!(out, "stack backtrace:");
        let _ = print_backtrace(&mut out, Skip::SignalHandler);
    } else {
        let _ = writeln!(
            out,
            "(no backtrace: this thread has no crash signal stack; it must call \
             websocket::crash::thread_started() when it starts)"
        );
    }
    drop(out);
    die(sig);
}

/// The panic hook: report, then abort (or unwind into [`catch_panic`]).
fn on_panic(info: &PanicHookInfo<'_>) {
    let message = info
        .payload_as_str()
        .unwrap_or("panic with a non-string payload");
    match claim() {
        Claim::Won => {}
        Claim::Recursive => {
            let mut out = Stderr::new();
            let _ = writeln!(
                out,
                "panic while printing the crash report above: {message}"
            );
            drop(out);
            die(REPORTED_SIGNAL.load(SeqCst));
        }
    }
    let catching = CATCHING.get();
    REPORTED_SIGNAL.store(libc::SIGABRT, SeqCst);
    start_watchdog();
    let mut out = Stderr::new();
    let current = std::thread::current();
    let thread = current.name().unwrap_or("<unnamed>");
    let _ = match info.location() {
        Some(at) => writeln!(out, "thread '{thread}' panicked at {at}:\n{message}"),
        None => writeln!(out, "thread '{thread}' panicked:\n{message}"),
    };
    let _ = writeln!(out, "stack backtrace:");
    let _ = print_backtrace(&mut out, Skip::PanicMachinery);
    if catching {
        drop(out);
        // SAFETY: `alarm` has no preconditions; 0 cancels the watchdog.
        unsafe { libc::alarm(0) };
        REPORTER.store(0, SeqCst);
        return;
    }
    let _ = writeln!(
        out,
        "aborting: a panic in any thread ends the whole server, which cannot work without it"
    );
    drop(out);
    ABORT_AFTER_PANIC.store(true, SeqCst);
    std::process::abort();
}

/// Runs if a report takes longer than [`REPORT_TIMEOUT_SECS`]: give up on it and die.
extern "C" fn on_report_timeout(_sig: c_int, _info: *mut libc::siginfo_t, _ctx: *mut c_void) {
    let mut out = Stderr::new();
    let _ = writeln!(
        out,
        "\n(crash report timed out after {REPORT_TIMEOUT_SECS} s)"
    );
    drop(out);
    die(REPORTED_SIGNAL.load(SeqCst));
}

/// Outcome of trying to become the one thread that reports a crash.
enum Claim {
    Won,
    /// This thread is already reporting: it crashed again inside its own report.
    Recursive,
}

/// Takes the once-guard. If another thread holds it, waits: either that thread kills the process,
/// or (a panic caught by [`catch_panic`]) it releases the guard and we report next.
fn claim() -> Claim {
    // SAFETY: `gettid` has no preconditions.
    let me = unsafe { libc::gettid() };
    loop {
        match REPORTER.compare_exchange(0, me, SeqCst, SeqCst) {
            Ok(_) => return Claim::Won,
            Err(owner) if owner == me => return Claim::Recursive,
            Err(_) => {
                let pause = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 10_000_000,
                };
                // SAFETY: valid timespec; the remainder pointer may be null.
                unsafe { libc::nanosleep(&pause, ptr::null_mut()) };
            }
        }
    }
}

/// Arms the watchdog that ends a report stuck for [`REPORT_TIMEOUT_SECS`].
fn start_watchdog() {
    if set_handler(libc::SIGALRM, on_report_timeout).is_ok() {
        // SAFETY: `alarm` has no preconditions.
        unsafe { libc::alarm(REPORT_TIMEOUT_SECS) };
    }
}

/// Restores the default action for `sig`, unblocks and raises it: the process dies by `sig`.
fn die(sig: c_int) -> ! {
    // Async-signal-safe; for terminating signals it does not return (it falls back to `abort`).
    let _ = emulate_default_handler(sig);
    // SAFETY: `_exit` is async-signal-safe and has no preconditions.
    unsafe { libc::_exit(128 + sig) }
}

type Handler = extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void);

/// Installs `handler` for `sig` on the alternate stack, with every fatal signal blocked while it
/// runs (a fault inside the handler then kills the process instead of re-entering it).
fn set_handler(sig: c_int, handler: Handler) -> io::Result<()> {
    // SAFETY: a zeroed `sigaction` is a valid starting point; every pointer passed is valid.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        libc::sigemptyset(&mut action.sa_mask);
        for fatal in FATAL_SIGNALS {
            libc::sigaddset(&mut action.sa_mask, fatal);
        }
        if libc::sigaction(sig, &action, ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn name(sig: c_int) -> &'static str {
    signal_name(sig).unwrap_or("(unknown signal)")
}

/// The calling thread's name, as the kernel knows it (std sets it, truncated to 15 bytes, for
/// every named thread). The main thread's kernel name is the program's, so it is called `main`.
fn thread_name(buf: &mut [u8; 16]) -> &str {
    // SAFETY: `gettid`/`getpid` have no preconditions; PR_GET_NAME writes at most 16 bytes.
    unsafe {
        if libc::gettid() == libc::getpid() {
            return "main";
        }
        if libc::prctl(libc::PR_GET_NAME, buf.as_mut_ptr()) != 0 {
            return "<unknown>";
        }
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    std::str::from_utf8(&buf[..len]).unwrap_or("<non-utf8 name>")
}

/// Whether the handler has enough stack to walk and symbolise the backtrace: either it runs on
/// our alternate stack, or on the thread's own stack (no alternate stack at all; then the crash
/// cannot be a stack overflow, or the kernel could not have called us).
fn has_room_for_report() -> bool {
    // SAFETY: querying only; `current` is a valid out-pointer.
    let current = unsafe {
        let mut current: libc::stack_t = std::mem::zeroed();
        if libc::sigaltstack(ptr::null(), &mut current) != 0 {
            return false;
        }
        current
    };
    current.ss_flags & libc::SS_ONSTACK == 0 || current.ss_size >= ALT_STACK_SIZE
}

// ---------------------------------------------------------------------------------------------
// What the signal means.

/// The kernel's explanation of one fatal signal.
struct Cause {
    sig: c_int,
    code: c_int,
    addr: usize,
    sender: libc::pid_t,
    stack_overflow: bool,
}

impl Cause {
    fn of(sig: c_int, info: &libc::siginfo_t) -> Cause {
        // SAFETY: `si_addr` is meaningful for the fault signals with a positive code (checked
        // before use); `si_pid` for codes <= 0 (sent by a process).
        let (addr, sender) = unsafe { (info.si_addr() as usize, info.si_pid()) };
        let (low, high) = STACK_GUARD.with(|g| g.get());
        let stack_overflow = sig == libc::SIGSEGV && info.si_code > 0 && low <= addr && addr < high;
        Cause {
            sig,
            code: info.si_code,
            addr,
            sender,
            stack_overflow,
        }
    }

    /// The words after the signal name on the first line.
    fn summary(&self) -> &'static str {
        match self.sig {
            _ if self.stack_overflow => "stack overflow",
            libc::SIGSEGV => "invalid memory access",
            libc::SIGBUS => "bus error: memory that cannot be accessed",
            libc::SIGILL => "illegal instruction",
            libc::SIGFPE => "arithmetic exception",
            libc::SIGABRT => "abort",
            _ => "fatal signal",
        }
    }

    /// A second line with the kernel's details, if they add anything.
    fn detail(&self, out: &mut Stderr) -> fmt::Result {
        if self.code <= 0 {
            // Sent with kill/raise/abort rather than caused by an instruction.
            // SAFETY: `getpid` has no preconditions.
            let me = unsafe { libc::getpid() };
            return match self.sender {
                _ if self.sig == libc::SIGABRT && self.sender == me => Ok(()),
                pid if pid == me => writeln!(out, "cause: raised by this process"),
                pid => writeln!(out, "cause: sent by process {pid}"),
            };
        }
        let cause = match (self.sig, self.code) {
            _ if self.stack_overflow => "the thread used up its stack (runaway recursion?)",
            (libc::SIGSEGV, SEGV_MAPERR) => "no memory is mapped at that address",
            (libc::SIGSEGV, SEGV_ACCERR) => "the memory there does not allow this access",
            (libc::SIGBUS, libc::BUS_ADRALN) => "misaligned address",
            (libc::SIGBUS, libc::BUS_ADRERR) => {
                "no backing store (e.g. past the end of a mapped file)"
            }
            (libc::SIGFPE, FPE_INTDIV) => return writeln!(out, "cause: integer division by zero"),
            (libc::SIGFPE, FPE_INTOVF) => return writeln!(out, "cause: integer overflow"),
            (libc::SIGILL, ILL_ILLOPC | ILL_ILLOPN) => {
                return writeln!(out, "cause: the CPU does not know this instruction");
            }
            (libc::SIGFPE | libc::SIGILL, code) => return writeln!(out, "cause: si_code {code}"),
            (_, code) => return writeln!(out, "fault address {:#x} (si_code {code})", self.addr),
        };
        writeln!(out, "fault address {:#x}: {cause}", self.addr)
    }
}

/// The range around the low end of the calling thread's stack where a fault means overflow.
fn stack_guard_range() -> (usize, usize) {
    // SAFETY: `attr` is initialised by `pthread_getattr_np` before use and destroyed after.
    let (low, guard) = unsafe {
        let mut attr = MaybeUninit::<libc::pthread_attr_t>::uninit();
        if libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()) != 0 {
            return (0, 0);
        }
        let mut attr = attr.assume_init();
        let (mut addr, mut size, mut guard) = (ptr::null_mut(), 0, 0);
        let ok = libc::pthread_attr_getstack(&attr, &mut addr, &mut size) == 0
            && libc::pthread_attr_getguardsize(&attr, &mut guard) == 0;
        libc::pthread_attr_destroy(&mut attr);
        if !ok {
            return (0, 0);
        }
        (addr as usize, guard)
    };
    // glibc before 2.27 counted the guard pages inside the stack, later ones put them below it;
    // the main thread has the kernel's guard gap below its rlimit instead. Rust probes every page
    // of a large frame in order, so the first faulting access lands right next to `low`.
    let margin = guard.max(page_size());
    (low.saturating_sub(margin), low + margin)
}

fn page_size() -> usize {
    // SAFETY: `sysconf` has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

// ---------------------------------------------------------------------------------------------
// The alternate signal stack.

/// One thread's alternate signal stack: an anonymous mapping with a guard page at the bottom,
/// so a handler that overflows it faults instead of overwriting whatever lies below.
struct AltStack {
    mapping: *mut c_void,
    len: usize,
}

impl AltStack {
    fn install() -> io::Result<AltStack> {
        let page = page_size();
        let len = ALT_STACK_SIZE + page;
        // SAFETY: a fresh private anonymous mapping; nothing else refers to it.
        let mapping = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if mapping == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = AltStack { mapping, len };
        // SAFETY: both calls only touch our own mapping.
        unsafe {
            if libc::mprotect(mapping, page, libc::PROT_NONE) != 0 {
                return Err(io::Error::last_os_error());
            }
            let ss = libc::stack_t {
                ss_sp: stack.usable(),
                ss_flags: 0,
                ss_size: ALT_STACK_SIZE,
            };
            if libc::sigaltstack(&ss, ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(stack)
    }

    /// Start of the usable stack, just above the guard page.
    fn usable(&self) -> *mut c_void {
        self.mapping.wrapping_byte_add(self.len - ALT_STACK_SIZE)
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        // SAFETY: we disable the alternate stack if it is still ours before unmapping it (std's
        // thread exit usually disabled it already); the mapping is ours alone.
        unsafe {
            let mut current: libc::stack_t = std::mem::zeroed();
            if libc::sigaltstack(ptr::null(), &mut current) == 0
                && current.ss_flags & libc::SS_DISABLE == 0
                && current.ss_sp == self.usable()
            {
                let off = libc::stack_t {
                    ss_sp: ptr::null_mut(),
                    ss_flags: libc::SS_DISABLE,
                    ss_size: 0,
                };
                libc::sigaltstack(&off, ptr::null_mut());
            }
            libc::munmap(self.mapping, self.len);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The backtrace.

/// Which frames at the top of the stack belong to the reporting machinery, not to the crash.
#[derive(Clone, Copy, PartialEq)]
enum Skip {
    /// Everything up to our signal handler and the kernel's signal trampoline above it.
    SignalHandler,
    /// The panic hook and std's panic machinery, up to the frame that called `panic!`.
    PanicMachinery,
}

/// One distinct frame; `repeats` counts identical frames right below it (recursion).
#[derive(Clone, Copy)]
struct Frame {
    ip: usize,
    function: usize,
    repeats: usize,
}

/// Walks the stack into a fixed array (no allocation), picks the frames that matter, and prints
/// them with function names and file:line.
fn print_backtrace(out: &mut Stderr, skip: Skip) -> fmt::Result {
    let mut frames = [Frame {
        ip: 0,
        function: 0,
        repeats: 0,
    }; MAX_FRAMES];
    let (mut len, mut dropped) = (0, 0usize);
    // SAFETY: unsynchronised use is serialised by the once-guard (see the module docs).
    unsafe {
        backtrace::trace_unsynchronized(|f| {
            let ip = f.ip() as usize;
            if len > 0 && frames[len - 1].ip == ip {
                frames[len - 1].repeats += 1;
            } else if len < MAX_FRAMES {
                frames[len] = Frame {
                    ip,
                    function: f.symbol_address() as usize,
                    repeats: 0,
                };
                len += 1;
            } else {
                dropped += 1;
            }
            true
        });
    }
    let frames = &frames[..len];
    let full = FULL_TRACE.load(SeqCst);
    let mut shown = interesting(frames, skip);
    if full {
        (shown.start, shown.end) = (0, len);
    }
    let mut number = 0;
    for (i, frame) in frames.iter().enumerate().take(shown.end).skip(shown.start) {
        print_frame(out, frame, shown.interrupted == Some(i), full, &mut number)?;
    }
    if dropped > 0 {
        writeln!(out, "      ... and {dropped} deeper frames")?;
    }
    if !full {
        writeln!(
            out,
            "note: runtime frames are omitted; RUST_BACKTRACE=full shows all"
        )?;
    }
    Ok(())
}

/// The frames of a backtrace worth showing.
struct Shown {
    start: usize,
    end: usize,
    /// The frame a signal interrupted. It stopped *at* its instruction; every other frame is at a
    /// return address, which symbolising moves back by one byte into the call instruction.
    interrupted: Option<usize>,
}

/// The frames worth showing: after the reporting machinery, before the Rust runtime's thread or
/// main start (std marks it with `__rust_begin_short_backtrace`).
fn interesting(frames: &[Frame], skip: Skip) -> Shown {
    let (start, interrupted) = match skip {
        Skip::SignalHandler => {
            // Our handler, then the trampoline the kernel returns through.
            let interrupted = frames
                .iter()
                .position(|f| f.function == on_fatal_signal as Handler as usize)
                .map(|i| i + 2);
            // For `abort()`, the frame that called it is the news, not libc's way of raising.
            let start = interrupted.unwrap_or(0);
            (
                start + count_leading(&frames[start.min(frames.len())..], is_abort_machinery),
                interrupted,
            )
        }
        Skip::PanicMachinery => {
            let after_marker = frames
                .iter()
                .position(|f| has_name(f, |n| n.contains("__rust_end_short_backtrace")))
                .map_or(0, |i| i + 1);
            (
                after_marker + count_leading(&frames[after_marker..], is_panic_machinery),
                None,
            )
        }
    };
    let start = start.min(frames.len());
    // The marker's frame is kept: functions inlined into it are ours (`print_frame` stops at
    // the marker itself).
    let end = frames[start..]
        .iter()
        .position(|f| has_name(f, is_thread_start))
        .map_or(frames.len(), |i| start + i + 1);
    Shown {
        start,
        end,
        interrupted,
    }
}

/// std's marker below the first frame of a thread (or of `main`).
fn is_thread_start(name: &str) -> bool {
    name.contains("__rust_begin_short_backtrace")
}

/// How many frames at the start of `frames` have a function name matching `pred`.
fn count_leading(frames: &[Frame], pred: fn(&str) -> bool) -> usize {
    frames.iter().take_while(|f| has_name(f, pred)).count()
}

/// glibc's and std's functions between a call to `abort` and the SIGABRT.
fn is_abort_machinery(name: &str) -> bool {
    matches!(
        name,
        "__pthread_kill_implementation"
            | "__pthread_kill_internal"
            | "__GI___pthread_kill"
            | "pthread_kill"
            | "__GI_raise"
            | "raise"
            | "gsignal"
            | "__GI_abort"
            | "abort"
    ) || name.starts_with("std::sys::pal::unix::abort_internal")
}

/// std's functions between `panic!` and the panic hook.
fn is_panic_machinery(name: &str) -> bool {
    name.starts_with("std::panicking::")
        || name.starts_with("core::panicking::")
        || name.contains("rust_begin_unwind")
}

/// Whether any function at `frame` (inlined ones included) has a demangled name matching `pred`.
fn has_name(frame: &Frame, pred: impl Fn(&str) -> bool) -> bool {
    let mut hit = false;
    // SAFETY: serialised by the once-guard.
    unsafe {
        backtrace::resolve_unsynchronized(frame.ip as *mut c_void, |symbol| {
            hit |= name_matches(symbol, &pred);
        });
    }
    hit
}

/// Whether `symbol` has a demangled name matching `pred` (formatted on the stack).
fn name_matches(symbol: &backtrace::Symbol, pred: impl Fn(&str) -> bool) -> bool {
    symbol.name().is_some_and(|name| {
        let mut buf = FixedBuf::<256>::new();
        let _ = write!(buf, "{name:#}");
        pred(buf.as_str())
    })
}

fn print_frame(
    out: &mut Stderr,
    frame: &Frame,
    exact: bool,
    full: bool,
    number: &mut usize,
) -> fmt::Result {
    let ip = if exact { frame.ip + 1 } else { frame.ip };
    let mut result = Ok(());
    let mut any = false;
    // Inlined functions come innermost first; from std's thread-start marker on they are the
    // runtime's (shown with `full` only).
    let mut at_runtime = false;
    // SAFETY: serialised by the once-guard.
    unsafe {
        backtrace::resolve_unsynchronized(ip as *mut c_void, |symbol| {
            any = true;
            at_runtime |= !full && name_matches(symbol, is_thread_start);
            if at_runtime {
                return;
            }
            result = result.and_then(|()| {
                write!(out, "{number:4}: ")?;
                if full {
                    write!(out, "{:#x} - ", frame.ip)?;
                }
                match symbol.name() {
                    Some(name) => writeln!(out, "{name:#}")?,
                    None => writeln!(out, "<unknown function>")?,
                }
                if let (Some(file), Some(line)) = (symbol.filename(), symbol.lineno()) {
                    // Our own files relative to the source tree (as in panic messages), so a
                    // report reads the same wherever the binary was built.
                    let file = file.strip_prefix(SOURCE_TREE).unwrap_or(file);
                    write!(out, "             at {}:{line}", file.display())?;
                    match symbol.colno() {
                        Some(col) => writeln!(out, ":{col}"),
                        None => writeln!(out),
                    }?;
                }
                *number += 1;
                Ok(())
            });
        });
    }
    result?;
    if !any {
        writeln!(out, "{number:4}: {:#x} - <unknown>", frame.ip)?;
        *number += 1;
    }
    if frame.repeats > 0 {
        writeln!(
            out,
            "      ... the frame above repeats {} more times",
            frame.repeats
        )?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Output without allocation or locks.

/// Formats into a stack buffer and writes it to fd 2 with `write(2)` when full or dropped.
struct Stderr {
    buf: FixedBuf<1024>,
}

impl Stderr {
    fn new() -> Stderr {
        Stderr {
            buf: FixedBuf::new(),
        }
    }

    fn flush(&mut self) {
        let mut bytes = &self.buf.bytes[..self.buf.len];
        while !bytes.is_empty() {
            // SAFETY: writes from a valid buffer of the given length.
            let n = unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
            match usize::try_from(n) {
                Ok(n) if n > 0 => bytes = &bytes[n..],
                _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
                _ => break,
            }
        }
        self.buf.len = 0;
    }
}

impl fmt::Write for Stderr {
    fn write_str(&mut self, mut s: &str) -> fmt::Result {
        while !s.is_empty() {
            if self.buf.len == self.buf.bytes.len() {
                self.flush();
            }
            let n = s.len().min(self.buf.bytes.len() - self.buf.len);
            self.buf.bytes[self.buf.len..self.buf.len + n].copy_from_slice(&s.as_bytes()[..n]);
            self.buf.len += n;
            s = &s[n..];
        }
        Ok(())
    }
}

impl Drop for Stderr {
    fn drop(&mut self) {
        self.flush();
    }
}

/// A fixed-size text buffer; what does not fit is cut off.
struct FixedBuf<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> FixedBuf<N> {
    fn new() -> Self {
        FixedBuf {
            bytes: [0; N],
            len: 0,
        }
    }

    fn as_str(&self) -> &str {
        match std::str::from_utf8(&self.bytes[..self.len]) {
            Ok(s) => s,
            // Cut inside a character: keep the valid prefix.
            Err(e) => std::str::from_utf8(&self.bytes[..e.valid_up_to()]).unwrap_or(""),
        }
    }
}

impl<const N: usize> fmt::Write for FixedBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(N - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}
