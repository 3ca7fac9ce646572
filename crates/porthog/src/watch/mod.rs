//! `porthog watch`: the live view, as one event loop (bottom's shape). Producers (the sampler
//! or a replay, the keyboard, the stop signals) send `Event`s on one channel; the loop applies
//! each with `update` and redraws with `draw` (a terminal) or prints a text frame (anything
//! else, and `--once`). The terminal is restored on every exit path, panics included.

pub mod app;
pub mod draw;
pub mod fleet;
pub mod plain;
pub mod replay;
#[cfg(test)]
pub(crate) mod tests;
pub mod trend;

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ratatui::crossterm::event::{self as term, KeyEventKind};

use crate::cli::WatchOptions;
use crate::collect::CollectOptions;
use crate::fleet::{Sampled, Source};
use crate::signals;
use app::{App, Event, update};
use replay::Replay;

pub fn run(opts: &WatchOptions) -> Result<u8> {
    let replay = opts.replay.as_deref().map(Replay::open).transpose()?;
    let source = match (&replay, &opts.replay, &opts.netns) {
        (Some(r), Some(path), _) => match &r.netns {
            Some(ns) => format!("replay of {} (netns {ns})", path.display()),
            None if r.all_netns => {
                format!("replay of {} (all network namespaces)", path.display())
            }
            None => format!("replay of {}", path.display()),
        },
        (_, _, Some(ns)) => format!("netns {}", ns.label()),
        _ if opts.all_netns => "all network namespaces".to_owned(),
        _ => "live".to_owned(),
    };
    let interval = replay.as_ref().map_or(opts.interval_s, |r| r.interval_s);
    let mut app = App::new(source, interval);
    if opts.once {
        return once(opts, replay, &mut app);
    }
    let (tx, rx) = mpsc::channel();
    let quit = tx.clone();
    signals::forward(move || {
        let _ = quit.send(Event::Quit);
    })?;
    let terminal = std::io::stdout().is_terminal();
    let paused = Arc::new(AtomicBool::new(false));
    // Live only, dropped (stopped and joined) when the view ends.
    let mut _feed = None;
    match replay {
        Some(r) => {
            let (tx, paused, speed) = (tx.clone(), Arc::clone(&paused), opts.speed);
            std::thread::spawn(move || replay::play(r, speed, paused, tx, !terminal));
        }
        None => {
            // The first sample here: a missing namespace or a refused setns is an error
            // (exit 3) before the screen is taken over, not a note inside it.
            let mut source = live_source(opts)?;
            let _ = tx.send(sample(&mut source)?);
            if opts.trace {
                _feed = start_feed(opts, &tx);
            }
            spawn_sampler(source, opts.interval_s, tx.clone());
        }
    }
    if terminal {
        tui(&mut app, &rx, tx, &paused)
    } else {
        drop(tx);
        plain_frames(&mut app, &rx)
    }
}

/// One frame: the latest sample (live: one sample; replay: the whole recording), exit code of
/// the check.
fn once(opts: &WatchOptions, replay: Option<Replay>, app: &mut App) -> Result<u8> {
    match replay {
        Some(r) => {
            for event in r {
                update(app, event?);
            }
        }
        None => update(app, sample(&mut live_source(opts)?)?),
    }
    let code = app.exit_code();
    crate::write_stdout(plain::frame(app).as_bytes())?;
    Ok(code)
}

fn live_source(opts: &WatchOptions) -> Result<Source> {
    let collect = CollectOptions { netns: opts.netns.clone() };
    Source::new(collect, opts.analyze, opts.interval_s, opts.all_netns)
}

/// A live sample as the event the view takes.
fn sample(source: &mut Source) -> Result<Event> {
    Ok(match source.sample()? {
        Sampled::One(s) => Event::Snapshot(s),
        Sampled::All(s) => Event::Fleet(s),
    })
}

/// The failures pane's source: the kernel tracer of `porthog trace`. Without it (not root, no
/// tracefs) the view goes on, and says once why the pane stays empty.
fn start_feed(opts: &WatchOptions, tx: &Sender<Event>) -> Option<crate::trace::FeedHandle> {
    let (failures, lost) = (tx.clone(), tx.clone());
    let feed = crate::trace::spawn_feed(
        crate::trace::Scope::of(opts.all_netns, opts.netns.clone()),
        move |f| {
            let _ = failures.send(Event::Failure(f));
        },
        move |n| {
            let _ = lost.send(Event::Lost(n));
        },
    );
    match feed {
        Ok(feed) => Some(feed),
        Err(e) => {
            let _ = tx.send(Event::Note(format!("failures pane needs root: {e:#}")));
            None
        }
    }
}

/// Samples every interval on its own thread (it enters the namespace on that thread for each
/// sample and leaves it again).
fn spawn_sampler(mut source: Source, interval_s: f64, tx: Sender<Event>) {
    let interval = Duration::from_secs_f64(interval_s);
    let start = Instant::now();
    std::thread::spawn(move || {
        for n in 1u32.. {
            // Samples are due on the interval grid, whatever each one took.
            std::thread::sleep((start + interval * n).saturating_duration_since(Instant::now()));
            let event = sample(&mut source)
                .unwrap_or_else(|e| Event::Note(format!("sample failed: {e:#}")));
            if tx.send(event).is_err() {
                return;
            }
        }
    });
}

fn spawn_keyboard(tx: Sender<Event>) {
    std::thread::spawn(move || {
        loop {
            let event = match term::read() {
                Ok(term::Event::Key(k)) if k.kind != KeyEventKind::Release => Event::Key(k),
                Ok(term::Event::Resize(..)) => Event::Tick,
                Ok(_) => continue,
                Err(_) => return,
            };
            if tx.send(event).is_err() {
                return;
            }
        }
    });
}

/// Restores the terminal when dropped: on return, error and unwinding alike.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        restore();
    }
}

/// Each step on its own, so that one failing (ratatui's `restore` stops at the first) does not
/// leave the terminal on the alternate screen.
fn restore() {
    use ratatui::crossterm::{cursor, execute, terminal};
    let left = execute!(std::io::stdout(), terminal::LeaveAlternateScreen, cursor::Show);
    let cooked = terminal::disable_raw_mode();
    if let Err(e) = left.and(cooked) {
        eprintln!("porthog: could not fully restore the terminal ({e}): run `reset`");
    }
}

/// On top of ratatui's hook (which restores the terminal, then prints the panic): a panic on
/// any thread, the sampler's too, ends the view instead of leaving it drawing on a restored
/// terminal.
fn exit_on_panic() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        restore();
        std::process::exit(101);
    }));
}

fn tui(app: &mut App, rx: &Receiver<Event>, tx: Sender<Event>, paused: &AtomicBool) -> Result<u8> {
    let mut terminal = ratatui::try_init().context("cannot set up the terminal")?;
    let _restore = Restore;
    exit_on_panic();
    // Only now: crossterm's reader is shared, and the set-up above may query the terminal.
    spawn_keyboard(tx);
    terminal.draw(|f| draw::draw(app, f)).context("drawing")?;
    while let Ok(event) = rx.recv() {
        update(app, event);
        // Apply whatever else is queued before drawing once.
        while let Ok(event) = rx.try_recv() {
            update(app, event);
        }
        if app.quit {
            break;
        }
        paused.store(app.paused, Ordering::Relaxed);
        terminal.draw(|f| draw::draw(app, f)).context("drawing")?;
    }
    Ok(0)
}

fn plain_frames(app: &mut App, rx: &Receiver<Event>) -> Result<u8> {
    let mut out = std::io::stdout().lock();
    while let Ok(event) = rx.recv() {
        let frame = matches!(event, Event::Snapshot(_) | Event::Fleet(_));
        if let Event::Note(note) = &event {
            eprintln!("porthog: {note}");
        }
        update(app, event);
        if app.quit {
            break;
        }
        if frame {
            match out.write_all(plain::frame(app).as_bytes()).and_then(|()| out.flush()) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(0),
                r => r.context("writing to standard output")?,
            }
        }
    }
    Ok(0)
}
