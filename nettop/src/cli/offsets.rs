//! `nettop offsets`: guess, cross-check, print each field, exit.
use std::process::ExitCode;

use anyhow::Result;
use nettop::probe::guess::Field;
use nettop::probe::{Attempt, Backend, OffsetsMode, Probe, StartConfig, Verification};
use nettop::sandbox::{Allowed, Protections};
use serde::Serialize;

use super::{escape, kernel_release};

#[derive(Serialize)]
struct Report {
    kernel: String,
    backend: Backend,
    /// Wall time of guessing, rounded up to whole milliseconds.
    guess_ms: Option<u64>,
    guess_us: Option<u64>,
    guess_connections: Option<usize>,
    guess_namespaces: Option<usize>,
    /// Which offsets the probe now uses: "guessed", or "btf" when BTF was
    /// asked for or overruled a guess.
    offsets: &'static str,
    mode: OffsetsMode,
    /// Every guessed field equals BTF (null: not checked).
    verified: Option<bool>,
    verification: String,
    ipv6: bool,
    ipv6_unavailable: Option<String>,
    attempts: Vec<Attempt>,
    missing_hooks: Vec<String>,
    kprobe_missed: Option<u64>,
    fields: Vec<FieldReport>,
    /// What nettop gave up once started (nettop::sandbox).
    protections: Protections,
}

#[derive(Serialize)]
struct FieldReport {
    name: &'static str,
    guessed: Option<u32>,
    btf: Option<u32>,
    agree: Option<bool>,
}

pub fn run(config: &StartConfig, json: bool, allowed: &Allowed) -> Result<ExitCode> {
    let mut probe = Probe::start(config)?;
    let verification = probe.verify();
    let mut allowed = allowed.clone();
    allowed.read_write.extend(probe.kprobe_events());
    let protections = nettop::sandbox::confine(&allowed, &mut || probe.counters().is_ok());
    super::say_notes(&protections);
    let guessed = probe.guess.as_ref().map(|g| g.offsets);
    let btf = match &verification {
        Verification::Checked(b) => Some(b.clone()),
        _ => None,
    };
    let fields: Vec<FieldReport> = Field::ALL
        .iter()
        .map(|&f| {
            let g = guessed.and_then(|g| g.get(f));
            let b = btf.as_ref().and_then(|b| b.get(f));
            FieldReport { name: f.name(), guessed: g, btf: b, agree: g.zip(b).map(|(g, b)| g == b) }
        })
        .collect();
    let disagree: Vec<&str> =
        fields.iter().filter(|f| f.agree == Some(false)).map(|f| f.name).collect();
    let (verified, text) = match &verification {
        Verification::NotRequested => (None, "not requested (--offsets guess)".to_owned()),
        Verification::Unavailable(why) => (None, why.clone()),
        Verification::Checked(_) if guessed.is_none() => (None, "offsets read from BTF".to_owned()),
        Verification::Checked(_) if disagree.is_empty() => {
            (Some(true), format!("every guessed field equals BTF ({})", probe.btf_path().display()))
        }
        Verification::Checked(_) => (
            Some(false),
            format!("BTF disagrees with the guess on {}; using BTF's offsets", disagree.join(", ")),
        ),
    };
    if verified == Some(false) || matches!(verification, Verification::Unavailable(_)) {
        eprintln!("nettop: warning: {}", escape(&text));
    }
    let guess = probe.guess.as_ref();
    let report = Report {
        kernel: kernel_release(),
        backend: probe.backend(),
        guess_ms: guess.map(|g| g.elapsed_ms.ceil() as u64),
        guess_us: guess.map(|g| (g.elapsed_ms * 1e3) as u64),
        guess_connections: guess.map(|g| g.connections),
        guess_namespaces: guess.map(|g| g.namespaces),
        offsets: if guessed.is_none() || verified == Some(false) { "btf" } else { "guessed" },
        mode: config.offsets,
        verified,
        verification: text,
        ipv6: probe.offsets().ipv6 != 0,
        ipv6_unavailable: probe.ipv6.clone().err(),
        attempts: probe.attempts.clone(),
        missing_hooks: probe.missing_hooks.clone(),
        kprobe_missed: probe.kprobe_missed(),
        fields,
        protections,
    };
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_text(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_text(r: &Report) {
    let opt = |v: Option<u32>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    println!("kernel    {}", escape(&r.kernel));
    println!("backend   {}", r.backend);
    for a in &r.attempts {
        println!("  tried   {}: {}", a.backend, escape(&a.error));
    }
    for m in &r.missing_hooks {
        println!("  missing {}", escape(m));
    }
    if let (Some(us), Some(n), Some(ns)) = (r.guess_us, r.guess_connections, r.guess_namespaces) {
        println!(
            "guessing  {:.1} ms, {n} connections, {ns} network namespace{}",
            us as f64 / 1e3,
            if ns == 1 { "" } else { "s" }
        );
    }
    println!("offsets   {} ({})", r.offsets, escape(&r.verification));
    if let Some(why) = &r.ipv6_unavailable {
        println!("ipv6      unavailable: {}", escape(why));
    }
    println!("running   {}", escape(&r.protections.summary()));
    println!();
    println!("{:<10} {:>8} {:>8}", "field", "guessed", "btf");
    for f in &r.fields {
        let mark = match f.agree {
            Some(true) => "ok",
            Some(false) => "DIFFERS",
            None => "",
        };
        println!("{:<10} {:>8} {:>8}  {mark}", f.name, opt(f.guessed), opt(f.btf));
    }
}
