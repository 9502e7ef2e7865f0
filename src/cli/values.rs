//! Range-checked value parsers for every numeric option, so that a bad number is refused
//! while the command line is read, with the option, the accepted range and the value named,
//! before any file is opened or any work is lost.

use std::ffi::OsStr;
use std::fmt::Display;

use clap::builder::TypedValueParser;
use clap::error::ErrorKind;

/// A whole number in `lo..=hi`.
#[derive(Debug, Clone, Copy)]
pub struct Whole {
    lo: u64,
    hi: u64,
}

impl Whole {
    /// Accept `lo..=hi`.
    pub const fn new(lo: u64, hi: u64) -> Self {
        Self { lo, hi }
    }
}

/// A real number in a range whose lower end may be open (`lo < x`) or closed (`lo <= x`).
#[derive(Debug, Clone, Copy)]
pub struct Real {
    lo: f64,
    hi: f64,
    open_lo: bool,
}

impl Real {
    /// Accept `lo <= x <= hi`.
    pub const fn closed(lo: f64, hi: f64) -> Self {
        Self {
            lo,
            hi,
            open_lo: false,
        }
    }

    /// Accept `lo < x <= hi`.
    pub const fn above(lo: f64, hi: f64) -> Self {
        Self {
            lo,
            hi,
            open_lo: true,
        }
    }

    fn range(&self) -> String {
        let op = if self.open_lo { "<" } else { "<=" };
        format!("{} {op} x <= {}", self.lo, self.hi)
    }

    fn check(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<f64, clap::Error> {
        let text = text(cmd, arg, value)?;
        let x: f64 = text.trim().parse().map_err(|_| {
            refuse(
                cmd,
                arg,
                &text,
                format!("not a number; use {}", self.range()),
            )
        })?;
        if !x.is_finite() {
            return Err(refuse(
                cmd,
                arg,
                &text,
                format!("not a finite number; use {}", self.range()),
            ));
        }
        let above_lo = if self.open_lo {
            x > self.lo
        } else {
            x >= self.lo
        };
        if above_lo && x <= self.hi {
            Ok(x)
        } else {
            Err(refuse(cmd, arg, &text, format!("outside {}", self.range())))
        }
    }
}

/// [`Real`] for `f32` options.
#[derive(Debug, Clone, Copy)]
pub struct Real32(pub Real);

/// [`Whole`] for `u64` options (seeds).
#[derive(Debug, Clone, Copy)]
pub struct Whole64(pub Whole);

fn text(
    cmd: &clap::Command,
    arg: Option<&clap::Arg>,
    value: &OsStr,
) -> Result<String, clap::Error> {
    value
        .to_str()
        .map(str::to_owned)
        .ok_or_else(|| refuse(cmd, arg, &value.to_string_lossy(), "not UTF-8 text"))
}

fn refuse(
    cmd: &clap::Command,
    arg: Option<&clap::Arg>,
    value: &str,
    why: impl Display,
) -> clap::Error {
    let name = arg.map_or_else(|| "the value".to_owned(), |a| format!("'{a}'"));
    clap::Error::raw(
        ErrorKind::ValueValidation,
        format!("invalid value '{value}' for {name}: {why}\n"),
    )
    .with_cmd(cmd)
}

impl Whole {
    fn check(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<u64, clap::Error> {
        let text = text(cmd, arg, value)?;
        let range = format!("a whole number in {}..={}", self.lo, self.hi);
        let n: u64 = text
            .trim()
            .parse()
            .map_err(|_| refuse(cmd, arg, &text, format!("not {range}")))?;
        if (self.lo..=self.hi).contains(&n) {
            Ok(n)
        } else {
            Err(refuse(
                cmd,
                arg,
                &text,
                format!("outside {}..={}", self.lo, self.hi),
            ))
        }
    }
}

/// clap's parser trait for each range type: `check`, then the conversion to the option's type.
macro_rules! value_parser {
    ($ty:ty => $value:ty, |$p:ident, $cmd:ident, $arg:ident, $v:ident| $body:expr) => {
        impl TypedValueParser for $ty {
            type Value = $value;

            fn parse_ref(
                &self,
                $cmd: &clap::Command,
                $arg: Option<&clap::Arg>,
                $v: &OsStr,
            ) -> Result<$value, clap::Error> {
                let $p = self;
                $body
            }
        }
    };
}

value_parser!(Whole => usize, |p, cmd, arg, v| {
    let n = p.check(cmd, arg, v)?;
    usize::try_from(n).map_err(|_| refuse(cmd, arg, &n.to_string(), "too large for this machine"))
});
value_parser!(Whole64 => u64, |p, cmd, arg, v| p.0.check(cmd, arg, v));
value_parser!(Real => f64, |p, cmd, arg, v| p.check(cmd, arg, v));
// The ranges in use are far inside f32's, so the narrowing only rounds.
value_parser!(Real32 => f32, |p, cmd, arg, v| p.0.check(cmd, arg, v).map(|x| x as f32));

// The ranges every command shares. Upper ends are far above any real use and low enough
// that nothing downstream overflows or tries to allocate the impossible.

/// CPU threads.
pub const THREADS: Whole = Whole::new(1, 1024);
/// Context length in tokens (llama.cpp counts in u32; 1M is beyond every model here).
pub const CTX: Whole = Whole::new(16, 1 << 20);
/// Tokens generated per answer.
pub const NEW_TOKENS: Whole = Whole::new(1, 1 << 20);
/// Tokens per training window.
pub const SEQ_LEN: Whole = Whole::new(2, 1 << 16);
/// Windows per micro-batch.
pub const BATCH: Whole = Whole::new(1, 1 << 12);
/// Tokens one micro-batch may hold (batch x seq-len): 2^17 tokens of 49k-entry f32 logits
/// already need ~26 GB, beyond this machine.
pub const BATCH_TOKENS: usize = 1 << 17;
/// Top-k log-probs stored per position.
pub const TOP_K: Whole = Whole::new(1, 1 << 16);
/// A count of records, prompts or steps that must be at least one.
pub const COUNT: Whole = Whole::new(1, 1 << 40);
/// Sampled answers per prompt.
pub const ANSWERS: Whole = Whole::new(1, 1000);
/// A count that may be zero ("none", "off", "at the end only").
pub const COUNT0: Whole = Whole::new(0, 1 << 40);
/// A seed: any u64.
pub const SEED: Whole64 = Whole64(Whole::new(0, u64::MAX));
/// Sampling temperature (0 = greedy).
pub const TEMPERATURE: Real32 = Real32(Real::closed(0.0, 100.0));
/// Distillation temperature (must soften, never divide by zero).
pub const KD_TEMPERATURE: Real32 = Real32(Real::above(0.0, 100.0));
/// Nucleus mass.
pub const TOP_P: Real32 = Real32(Real::above(0.0, 1.0));
/// A mixing weight in 0..=1.
pub const MIX: Real32 = Real32(Real::closed(0.0, 1.0));
/// A share in 0..=1 (f64).
pub const FRACTION: Real = Real::closed(0.0, 1.0);
/// A held-out share: below 1, or nothing would be left to train on.
pub const HELD_OUT: Real = Real::closed(0.0, 0.9);
/// A loss weight in 0..=100.
pub const WEIGHT: Real32 = Real32(Real::closed(0.0, 100.0));
/// Learning rate.
pub const LR: Real = Real::above(0.0, 10.0);
/// AdamW weight decay.
pub const WEIGHT_DECAY: Real = Real::closed(0.0, 10.0);
/// Gradient-norm clip (0 = off).
pub const GRAD_CLIP: Real = Real::closed(0.0, 1e6);
/// Minutes of a time budget (up to four weeks).
pub const MINUTES: Real = Real::above(0.0, 40_320.0);
/// Epochs over the training windows.
pub const EPOCHS: Real = Real::above(0.0, 1e6);
/// Decode speed-up that --shape auto aims for.
pub const SPEEDUP: Real = Real::closed(1.0, 100.0);
/// A percentage.
pub const PERCENT: Real = Real::closed(0.0, 100.0);
/// A model width (hidden size, MLP width).
pub const WIDTH: Whole = Whole::new(1, 1 << 16);
/// A head count.
pub const HEADS: Whole = Whole::new(1, 1 << 10);
/// A layer count.
pub const LAYERS: Whole = Whole::new(1, 1 << 10);
/// A block index in a teacher (checked against the teacher's depth when it is loaded).
pub const BLOCK: Whole = Whole::new(0, (1 << 10) - 1);
/// A vocabulary size.
pub const VOCAB: Whole = Whole::new(2, 1 << 22);
/// Free-running answer length.
pub const ANSWER_TOKENS: Whole = Whole::new(1, 4096);
/// Sequences decoded together.
pub const PARALLEL: Whole = Whole::new(1, 256);
/// Seconds one request to a teacher server may take (a day at most).
pub const TIMEOUT: Whole64 = Whole64(Whole::new(1, 86_400));

/// Refuse a micro-batch of more than [`BATCH_TOKENS`] tokens, naming both options.
///
/// # Errors
/// [`crate::Error::Invalid`] with the product, the bound and the fix.
pub fn batch_tokens(batch: usize, seq_len: usize) -> crate::Result<()> {
    match batch.checked_mul(seq_len) {
        Some(n) if n <= BATCH_TOKENS => Ok(()),
        _ => Err(crate::Error::Invalid(format!(
            "--batch {batch} x --seq-len {seq_len} is more than {BATCH_TOKENS} tokens per micro-batch, \
             more memory than a step can have: lower --batch and raise --grad-accum instead"
        ))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cmd() -> clap::Command {
        // Built, as clap does before parsing, so that the argument can be displayed.
        let mut c = clap::Command::new("t").arg(clap::Arg::new("n").long("n"));
        c.build();
        c
    }

    fn whole(p: Whole, s: &str) -> Result<usize, String> {
        let c = cmd();
        let arg = c.get_arguments().next();
        p.parse_ref(&c, arg, OsStr::new(s))
            .map_err(|e| e.to_string())
    }

    fn real(p: Real, s: &str) -> Result<f64, String> {
        let c = cmd();
        let arg = c.get_arguments().next();
        p.parse_ref(&c, arg, OsStr::new(s))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn whole_numbers_outside_the_range_are_named() {
        assert_eq!(whole(SEQ_LEN, "256"), Ok(256));
        for bad in ["0", "-1", "65537", "99999999999999999999", "1.5", "x", ""] {
            let e = whole(SEQ_LEN, bad).unwrap_err();
            assert!(e.contains("--n"), "{e}");
            assert!(e.contains(&format!("'{bad}'")), "{e}");
        }
        assert!(whole(SEQ_LEN, "0").unwrap_err().contains("2..=65536"));
    }

    #[test]
    fn huge_micro_batches_are_refused() {
        assert!(batch_tokens(8, 256).is_ok());
        let e = batch_tokens(4096, 65536).unwrap_err().to_string();
        assert!(e.contains("--batch") && e.contains("--seq-len"), "{e}");
    }

    #[test]
    fn reals_refuse_nan_infinity_and_open_ends() {
        assert_eq!(real(LR, "1e-3"), Ok(1e-3));
        assert_eq!(real(FRACTION, "0"), Ok(0.0));
        for bad in ["0", "-1", "NaN", "inf", "-inf", "1e300", "lots"] {
            let e = real(LR, bad).unwrap_err();
            assert!(e.contains("--n"), "{e}");
        }
        assert!(real(LR, "NaN").unwrap_err().contains("finite"));
        assert!(real(LR, "0").unwrap_err().contains("0 < x <= 10"));
    }

    #[test]
    fn f32_and_u64_forms_share_the_checks() {
        let c = cmd();
        let arg = c.get_arguments().next();
        assert_eq!(TOP_P.parse_ref(&c, arg, OsStr::new("0.9")).ok(), Some(0.9));
        assert!(TOP_P.parse_ref(&c, arg, OsStr::new("0")).is_err());
        assert_eq!(
            SEED.parse_ref(&c, arg, OsStr::new("18446744073709551615"))
                .ok(),
            Some(u64::MAX)
        );
        assert!(SEED.parse_ref(&c, arg, OsStr::new("-1")).is_err());
    }
}
