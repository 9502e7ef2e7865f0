#!/usr/bin/env python3
"""Fault suite: kill, starve and corrupt distill's commands on the real teacher, then check
that nothing finished is lost and that every resumed result equals the uninterrupted one.

Each case prints one line: trials, survived, data lost. The suite fails if any trial did
not survive or lost data. Run it through scripts/fault-suite.sh (it finds the binary).

Cases
  kill-record   SIGKILL `record` at random moments; rerun; shards byte for byte
  kill-train    SIGKILL `train`; rerun with --resume; losses within 1e-6
  kill-export   SIGKILL `export` over an older file; the file is the old or the new one
  kill-run      SIGKILL `distill run`; rerun; corpus bytes and losses equal
  full-record   disk full (small tmpfs, or a file-size limit) during record
  full-train    disk full while train writes a checkpoint
  full-export   disk full during export over an older file
  lost-manifest manifest.json deleted after some shards: they are kept, not re-recorded
  second-writer a second record/train/run on a busy directory is refused with the pid
  corrupt-shard a damaged shard: record re-records or refuses, train refuses, by name
  corrupt-ckpt  a damaged checkpoint: train --resume refuses by name, deletes nothing
  corrupt-run   a damaged run.json: distill run refuses by name, deletes nothing
"""

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TEACHER = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


class Suite:
    def __init__(self, binary: Path, work: Path, trials: int, seed: int, verbose: bool):
        self.bin = binary
        self.work = work
        self.trials = trials
        self.rng = random.Random(seed)
        self.verbose = verbose
        self.failed = []
        work.mkdir(parents=True, exist_ok=True)
        self.prompts = work / "prompts.jsonl"
        lines = (REPO / "prompts" / "train.jsonl").read_text().splitlines()[:12]
        self.prompts.write_text("".join(l + "\n" for l in lines))
        run_lines = (REPO / "prompts" / "train.jsonl").read_text().splitlines()[:16]
        self.run_prompts = work / "run-train.jsonl"
        self.run_prompts.write_text("".join(l + "\n" for l in run_lines))
        valid = (REPO / "prompts" / "valid.jsonl").read_text().splitlines()[:2]
        self.run_valid = work / "run-valid.jsonl"
        self.run_valid.write_text("".join(l + "\n" for l in valid))
        self.tmpfs_ok = None

    # ---- running the binary -------------------------------------------------------------

    def cmd(self, args):
        return [str(self.bin)] + [str(a) for a in args]

    def run(self, args, limit_fsize=None, timeout=900):
        pre = None
        if limit_fsize is not None:
            def pre():
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit_fsize, limit_fsize))
        p = subprocess.run(self.cmd(args), capture_output=True, text=True, timeout=timeout,
                           preexec_fn=pre)
        if self.verbose:
            print(f"  $ distill {' '.join(map(str, args[:2]))} ... -> {p.returncode}", flush=True)
        return p

    def ok(self, args):
        p = self.run(args)
        if p.returncode != 0:
            raise RuntimeError(f"distill {' '.join(map(str, args))} failed ({p.returncode}):\n"
                               f"{p.stderr[-3000:]}")
        return p

    def timed(self, args):
        t = time.monotonic()
        self.ok(args)
        return time.monotonic() - t

    def kill_at(self, args, seconds):
        """Start the command and SIGKILL it after `seconds` (or let it finish first)."""
        child = subprocess.Popen(self.cmd(args), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        try:
            child.wait(timeout=seconds)
            return False  # finished before the kill
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGKILL)
            child.wait()
            return True

    # ---- argument sets ------------------------------------------------------------------

    def record_args(self, out, extra=()):
        return ["record", "--teacher", TEACHER, "--prompts", self.prompts, "--out", out,
                "--quiet", "--max-new-tokens", "16", "--shard-size", "3", "--parallel", "2",
                *extra]

    def train_args(self, corpus, out, extra=()):
        """A 24-step run of a small student; a flag in `extra` replaces its default."""
        flags = {"--preset": "small", "--batch": "4", "--seq-len": "64", "--lr": "3e-3",
                 "--warmup": "5", "--steps": "24", "--save-every": "4", "--eval-every": "0"}
        extra = list(extra)
        for i, f in enumerate(extra[:-1]):
            if f in flags:
                flags[f] = extra[i + 1]
                extra[i : i + 2] = [None, None]
        args = ["train", "--corpus", corpus, "--out", out, "--quiet"]
        for f, v in flags.items():
            args += [f, v]
        return args + [a for a in extra if a is not None]

    def export_args(self, student, out, quant):
        return ["export", "--student", student, "--out", out, "--quant", quant]

    def run_args(self, out):
        return ["run", "--teacher", TEACHER, "--prompts", self.run_prompts,
                "--valid-prompts", self.run_valid, "--out", out, "--minutes", "600",
                "--max-new-tokens", "12", "--layers", "0,29", "--train-steps", "8",
                "--batch", "2", "--seq-len", "64", "--no-speed", "--threads", "2",
                "--answers-per-prompt", "1"]

    # ---- reading results ----------------------------------------------------------------

    @staticmethod
    def manifest(dir_):
        try:
            return json.loads((Path(dir_) / "manifest.json").read_text())
        except (OSError, ValueError):
            return None

    @staticmethod
    def sha(path):
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()

    def shard_hashes(self, dir_):
        """{shard file: sha256} of the finished shards a manifest lists."""
        m = self.manifest(dir_)
        if not m:
            return {}
        out = {}
        for s in m.get("shards", []):
            f = Path(dir_) / s["file"]
            out[s["file"]] = self.sha(f) if f.exists() else None
        return out

    def corpus_equal(self, a, b):
        ma, mb = self.manifest(a), self.manifest(b)
        if not ma or not mb or not mb.get("complete"):
            return False, "no complete manifest"
        ha, hb = self.shard_hashes(a), self.shard_hashes(b)
        if ha != hb:
            return False, f"shards differ: {sorted(set(ha.items()) ^ set(hb.items()))[:4]}"
        return True, ""

    @staticmethod
    def losses(dir_):
        try:
            text = (Path(dir_) / "metrics.jsonl").read_text()
        except OSError:
            return []
        out = []
        for line in text.splitlines():
            v = json.loads(line)
            if v.get("kind") == "train":
                out.append((v["step"], v["loss"]))
        return out

    def losses_equal(self, a, b):
        la, lb = self.losses(a), self.losses(b)
        if len(la) != len(lb) or not la:
            return False, f"{len(la)} vs {len(lb)} train lines"
        worst = max(abs(x[1] - y[1]) for x, y in zip(la, lb))
        steps = [x[0] for x in la] == [y[0] for y in lb]
        return (worst <= 1e-6 and steps), f"max |dloss| {worst:.2e}"

    def fresh(self, name):
        d = self.work / name
        shutil.rmtree(d, ignore_errors=True)
        return d

    def report(self, case, trials, survived, lost, note=""):
        line = (f"fault-suite: {case:<14} trials {trials:>3}  survived {survived:>3}  "
                f"data lost {lost}")
        if note:
            line += f"  ({note})"
        print(line, flush=True)
        if survived != trials or lost:
            self.failed.append(case)

    # ---- disk-full helpers --------------------------------------------------------------

    def mount_tmpfs(self, dir_, size):
        dir_.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(dir_)],
                           capture_output=True)
        return r.returncode == 0

    def umount(self, dir_):
        subprocess.run(["umount", str(dir_)], capture_output=True)

    def can_tmpfs(self):
        if self.tmpfs_ok is None:
            probe = self.work / "tmpfs-probe"
            self.tmpfs_ok = os.geteuid() == 0 and self.mount_tmpfs(probe, "1m")
            if self.tmpfs_ok:
                self.umount(probe)
        return self.tmpfs_ok


# ---- cases ------------------------------------------------------------------------------


def kill_record(s: Suite, whole, took):
    survived = lost = hits = 0
    for t in range(s.trials):
        out = s.fresh(f"kill-record-{t}")
        at = s.rng.uniform(0.05, took)
        hits += s.kill_at(s.record_args(out), at)
        before = {f: h for f, h in s.shard_hashes(out).items() if h}
        p = s.run(s.record_args(out))
        after = s.shard_hashes(out)
        lost += sum(1 for f, h in before.items() if after.get(f) != h)
        same, why = s.corpus_equal(whole, out)
        if p.returncode == 0 and same:
            survived += 1
        elif s.verbose:
            print(f"  trial {t} (kill at {at:.2f}s): {why} {p.stderr[-500:]}")
    s.report("kill-record", s.trials, survived, lost, f"{hits} killed mid-run, at 0..{took:.1f}s")


def kill_train(s: Suite, corpus, whole, took):
    survived = lost = hits = 0
    for t in range(s.trials):
        out = s.fresh(f"kill-train-{t}")
        at = s.rng.uniform(0.05, took)
        hits += s.kill_at(s.train_args(corpus, out), at)
        state = out / "train_state.json"
        saved = json.loads(state.read_text())["step"] if state.exists() else None
        p = s.run(s.train_args(corpus, out, ["--resume"] if saved is not None else []))
        # A checkpoint saved before the kill that cannot be resumed from is work lost.
        lost += int(saved is not None and p.returncode != 0)
        if p.returncode != 0 and saved is None:
            # Killed before the first checkpoint: a rerun without --resume starts over.
            p = s.run(s.train_args(corpus, out))
        same, why = s.losses_equal(whole, out)
        if p.returncode == 0 and same:
            survived += 1
        elif s.verbose:
            print(f"  trial {t} (kill at {at:.2f}s, saved {saved}): {why} {p.stderr[-500:]}")
    s.report("kill-train", s.trials, survived, lost, f"{hits} killed mid-run, at 0..{took:.1f}s")


def kill_export(s: Suite, student):
    ref_new = s.work / "export-new.gguf"
    ref_old = s.work / "export-old.gguf"
    took = s.timed(s.export_args(student, ref_new, "f16"))
    s.ok(s.export_args(student, ref_old, "q8_0"))
    new, old = s.sha(ref_new), s.sha(ref_old)
    survived = lost = hits = 0
    for t in range(s.trials):
        d = s.fresh(f"kill-export-{t}")
        d.mkdir(parents=True)
        target = d / "student.gguf"
        shutil.copy(ref_old, target)
        at = s.rng.uniform(0.01, took)
        hits += s.kill_at(s.export_args(student, target, "f16"), at)
        now = s.sha(target) if target.exists() else None
        if now not in (old, new):
            lost += 1
        p = s.run(s.export_args(student, target, "f16"))
        if p.returncode == 0 and now in (old, new) and s.sha(target) == new:
            survived += 1
    s.report("kill-export", s.trials, survived, lost, f"{hits} killed mid-run, at 0..{took:.2f}s")


def kill_run(s: Suite):
    whole = s.fresh("run-whole")
    took = s.timed(s.run_args(whole))
    survived = lost = hits = 0
    for t in range(s.trials):
        out = s.fresh(f"kill-run-{t}")
        at = s.rng.uniform(0.1, took)
        hits += s.kill_at(s.run_args(out), at)
        corpora = ("train", "valid")  # the run's two recordings
        before = {(c, f): h for c in corpora
                  for f, h in s.shard_hashes(out / c).items() if h}
        p = s.run(s.run_args(out))
        lost += sum(1 for (c, f), h in before.items() if s.shard_hashes(out / c).get(f) != h)
        checks = [s.corpus_equal(whole / c, out / c) for c in corpora]
        same_c, why_c = all(ok for ok, _ in checks), "; ".join(w for _, w in checks)
        same_l, why_l = s.losses_equal(whole / "student", out / "student")
        if p.returncode == 0 and same_c and same_l:
            survived += 1
        elif s.verbose:
            print(f"  trial {t} (kill at {at:.1f}s): {why_c} {why_l} {p.stderr[-500:]}")
    s.report("kill-run", s.trials, survived, lost, f"{hits} killed mid-run, at 0..{took:.0f}s")


def full_disk(s: Suite, whole, corpus, student):
    """Disk full during record, train checkpointing and export; then space comes back."""
    if s.can_tmpfs():
        how = "tmpfs"
    else:
        how = "file-size limit"
    # record: room for about half the corpus
    total = sum((whole / f).stat().st_size for f in s.shard_hashes(whole)) + 8192
    survived = lost = 0
    d = s.fresh("full-record")
    out = d / "corpus"
    if how == "tmpfs":
        s.mount_tmpfs(out, max(total // 2, 4096))
        p = s.run(s.record_args(out))
    else:
        out.mkdir(parents=True)
        p = s.run(s.record_args(out), limit_fsize=max(total // 8, 1024))
    named = names_full_disk(p)
    before = {f: h for f, h in s.shard_hashes(out).items() if h}
    if how == "tmpfs":
        subprocess.run(["mount", "-o", "remount,size=64m", str(out)], capture_output=True)
    p2 = s.run(s.record_args(out))
    after = s.shard_hashes(out)
    lost += sum(1 for f, h in before.items() if after.get(f) != h)
    same, _ = s.corpus_equal(whole, out)
    survived += int(named and p2.returncode == 0 and same)
    if how == "tmpfs":
        s.umount(out)
    if s.verbose and not named:
        print(f"  record: {p.returncode} {p.stderr[-400:]}")
    s.report("full-record", 1, survived, lost, f"{how}; error: {first_line(p.stderr)}")

    # train: room for one checkpoint but not two copies of the next
    ckpt = sum(f.stat().st_size for f in Path(student).iterdir() if f.is_file())
    d = s.fresh("full-train")
    out = d / "student"
    if how == "tmpfs":
        s.mount_tmpfs(out, int(ckpt * 1.3))
        p = s.run(s.train_args(corpus, out))
    else:
        out.mkdir(parents=True)
        p = s.run(s.train_args(corpus, out), limit_fsize=int(ckpt * 0.5))
    named = names_full_disk(p)
    state = out / "train_state.json"
    loadable = True
    if state.exists():
        step = json.loads(state.read_text())["step"]
        loadable = (out / "model.safetensors").exists() and step > 0
    if how == "tmpfs":
        subprocess.run(["mount", "-o", "remount,size=256m", str(out)], capture_output=True)
        p2 = s.run(s.train_args(corpus, out, ["--resume"] if state.exists() else []))
    else:
        p2 = s.run(s.train_args(corpus, out, ["--resume"] if state.exists() else []))
    same, why = s.losses_equal(s.work / "train-whole", out)
    lost += int(not loadable)
    survived_t = int(named and p2.returncode == 0 and same)
    if how == "tmpfs":
        s.umount(out)
    if s.verbose and not survived_t:
        print(f"  train: {p.returncode} {p.stderr[-400:]} / {p2.stderr[-400:]} {why}")
    s.report("full-train", 1, survived_t, int(not loadable), f"{how}; error: {first_line(p.stderr)}")

    # export: an older file in place, no room for the new one
    d = s.fresh("full-export")
    old_ref = s.work / "export-old.gguf"
    size = old_ref.stat().st_size
    target = d / "student.gguf"
    if how == "tmpfs":
        s.mount_tmpfs(d, int(size * 1.5))
        shutil.copy(old_ref, target)
        p = s.run(s.export_args(student, target, "f16"))
    else:
        d.mkdir(parents=True)
        shutil.copy(old_ref, target)
        p = s.run(s.export_args(student, target, "f16"), limit_fsize=size)
    named = names_full_disk(p)
    kept = target.exists() and s.sha(target) == s.sha(old_ref)
    leftovers = [f.name for f in d.iterdir() if f.name != "student.gguf"]
    if how == "tmpfs":
        s.umount(d)
    s.report("full-export", 1, int(named and kept and not leftovers), int(not kept),
             f"{how}; error: {first_line(p.stderr)}; leftovers {leftovers}")


def lost_manifest(s: Suite, whole):
    survived = lost = 0
    trials = 1
    out = s.fresh("lost-manifest")
    shutil.copytree(whole, out)
    files = sorted(s.shard_hashes(out))
    mtimes = {f: (out / f).stat().st_mtime_ns for f in files}
    (out / "manifest.json").unlink()
    p = s.run(s.record_args(out))
    same, _ = s.corpus_equal(whole, out)
    kept = sum(1 for f in files if (out / f).exists()
               and (out / f).stat().st_mtime_ns == mtimes[f])
    lost = len(files) - kept
    survived += int(p.returncode == 0 and same and lost == 0)
    s.report("lost-manifest", trials, survived, lost,
             f"{kept}/{len(files)} shards kept; {first_line(p.stderr) or 'no message'}")


def second_writer(s: Suite, corpus):
    trials = survived = lost = 0
    cases = [
        ("record", lambda o: s.record_args(o)),
        ("train", lambda o: s.train_args(corpus, o)),
        ("run", lambda o: s.run_args(o)),
    ]
    for name, make in cases:
        trials += 1
        out = s.fresh(f"second-{name}")
        first = subprocess.Popen(s.cmd(make(out)), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        # Once the first holds the lock, pause it there so that the second surely meets it.
        lock = out / ".distill.lock"
        clock = time.monotonic()
        while first.poll() is None and time.monotonic() - clock < 120:
            if lock.exists() and str(first.pid) in lock.read_text(errors="replace"):
                break
            time.sleep(0.01)
        first.send_signal(signal.SIGSTOP)
        second = s.run(make(out))
        first.send_signal(signal.SIGCONT)
        if name == "run":
            # The first writer must be undisturbed: still running; it is not waited for.
            time.sleep(1)
            first_fine = first.poll() is None
            first.send_signal(signal.SIGKILL)
            first.wait()
        else:
            first_fine = first.wait(timeout=600) == 0
        refused = second.returncode not in (0, 101) and str(first.pid) in second.stderr
        survived += int(refused and first_fine)
        lost += int(not first_fine)
        if s.verbose and not (refused and first_fine):
            print(f"  {name}: second exit {second.returncode}, first fine {first_fine}: "
                  f"{second.stderr[-300:]}")
    s.report("second-writer", trials, survived, lost, "record, train, run")


def corrupt_shard(s: Suite, whole):
    trials = survived = lost = 0
    first = sorted(s.shard_hashes(whole))[0]
    for how in ("flip", "truncate"):
        # record over a damaged finished shard: re-recorded to the same bytes, or refused
        trials += 1
        out = s.fresh(f"corrupt-shard-{how}")
        shutil.copytree(whole, out)
        m = s.manifest(out)
        m["complete"] = False
        (out / "manifest.json").write_text(json.dumps(m))
        damage(out / first, how)
        p = s.run(s.record_args(out))
        same, _ = s.corpus_equal(whole, out)
        refused = p.returncode not in (0, 101) and first in p.stderr and (out / first).exists()
        if refused:
            # Follow the fix the error gives: move the damaged shard and those after it
            # away, delete the manifest, rerun: the earlier shards are kept.
            keep = {f: s.sha(out / f) for f in sorted(s.shard_hashes(whole)) if f < first}
            for f in sorted(s.shard_hashes(whole)):
                if f >= first:
                    (out / f).rename(s.work / f"moved-{how}-{f}")
            (out / "manifest.json").unlink()
            p = s.run(s.record_args(out))
            same, _ = s.corpus_equal(whole, out)
            lost += sum(1 for f, h in keep.items() if s.sha(out / f) != h)
        survived += int(p.returncode == 0 and same)
        if s.verbose and not ((p.returncode == 0 and same) or refused):
            print(f"  record over {how}ed shard: {p.returncode} same={same} {p.stderr[-300:]}")
        # train on a damaged corpus: refused, naming the shard
        trials += 1
        bad = s.fresh(f"corrupt-corpus-{how}")
        shutil.copytree(whole, bad)
        damage(bad / first, how)
        p = s.run(s.train_args(bad, s.fresh(f"corrupt-train-{how}")))
        named = p.returncode not in (0, 101) and first in p.stderr
        survived += int(named)
        if s.verbose and not named:
            print(f"  train on {how}ed shard: {p.returncode} {p.stderr[-300:]}")
    s.report("corrupt-shard", trials, survived, lost, "flipped and truncated shards")


def corrupt_checkpoint(s: Suite, corpus):
    trials = survived = lost = 0
    # A run stopped part-way: killed once its checkpoint reaches step 8 of 24.
    base = s.fresh("ckpt-base")
    child = subprocess.Popen(s.cmd(s.train_args(corpus, base)), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    while child.poll() is None:
        try:
            if json.loads((base / "train_state.json").read_text())["step"] >= 8:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    stem = json.loads((base / "train_state.json").read_text())["checkpoint"]
    weights, moments = f"{stem}.model.safetensors", f"{stem}.optim.safetensors"
    for target, how in [(weights, "truncate"), (weights, "header"), (moments, "flip"),
                        (moments, "truncate"), ("train_state.json", "garbage"),
                        ("train_state.json", "truncate")]:
        trials += 1
        out = s.fresh(f"ckpt-{Path(target).name}-{how}")
        shutil.copytree(base, out)
        damage(out / target, how)
        files = sorted(str(f.relative_to(out)) for f in out.rglob("*"))
        p = s.run(s.train_args(corpus, out, ["--resume"]))
        named = p.returncode not in (0, 101) and Path(target).name in p.stderr
        still = sorted(str(f.relative_to(out)) for f in out.rglob("*"))
        lost += int(not set(files) <= set(still))
        survived += int(named)
        if s.verbose and not named:
            print(f"  {target} {how}: {p.returncode} {p.stderr[-300:]}")
    s.report("corrupt-ckpt", trials, survived, lost, "weights and state damaged")


def corrupt_run(s: Suite):
    trials = survived = lost = 0
    base = s.work / "run-whole"
    if not (base / "run.json").exists():
        s.ok(s.run_args(base))
    for how in ("garbage", "truncate", "short-stages", "wrong-type"):
        trials += 1
        out = s.fresh(f"corrupt-run-{how}")
        shutil.copytree(base, out)
        path = out / "run.json"
        if how == "short-stages":
            v = json.loads(path.read_text())
            v["stages"] = v["stages"][:1]
            path.write_text(json.dumps(v))
        elif how == "wrong-type":
            v = json.loads(path.read_text())
            v["stages"] = "done"
            path.write_text(json.dumps(v))
        else:
            damage(path, how)
        files = sorted(str(f.relative_to(out)) for f in out.rglob("*"))
        p = s.run(s.run_args(out))
        named = p.returncode not in (0, 101) and "run.json" in p.stderr
        still = sorted(str(f.relative_to(out)) for f in out.rglob("*"))
        lost += int(not set(files) <= set(still))
        survived += int(named)
        if s.verbose and not named:
            print(f"  run.json {how}: {p.returncode} {p.stderr[-300:]}")
    s.report("corrupt-run", trials, survived, lost, "garbage, truncated, short stages, wrong type")


def names_full_disk(p) -> bool:
    """A clean failure (no panic) whose message says the disk or file size ran out."""
    err = p.stderr.lower()
    return p.returncode not in (0, 101) and any(w in err for w in ("space", "too large", "disk"))


def damage(path: Path, how: str):
    data = bytearray(path.read_bytes())
    if how == "flip":
        for i in range(len(data) // 2, min(len(data), len(data) // 2 + 64)):
            data[i] ^= 0x5A
    elif how == "truncate":
        data = data[: len(data) // 2]
    elif how == "header":
        data[0:16] = b"\xff" * 16
    elif how == "garbage":
        data = bytearray(b"not json at all \x00\x01")
    path.write_bytes(bytes(data))


def first_line(text: str) -> str:
    """The line of an error that says why (the last cause), else its first line."""
    for line in text.splitlines():
        if "space" in line.lower() or "too large" in line.lower():
            return line.strip()[:120]
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:120]
    return ""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--bin", type=Path, required=True, help="the distill binary")
    ap.add_argument("--work", type=Path, default=Path("/tmp/distill-fault-suite"))
    ap.add_argument("--trials", type=int, default=20, help="random kills per command")
    ap.add_argument("--run-trials", type=int, default=None,
                    help="random kills of `distill run` (default: --trials)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", nargs="*", help="run only these cases")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    if a.trials < 1:
        ap.error("--trials must be at least 1")
    if not TEACHER.exists():
        sys.exit(f"fault-suite: {TEACHER} is missing: run scripts/setup.sh")
    s = Suite(a.bin, a.work, a.trials, a.seed, a.verbose)
    want = lambda c: not a.only or c in a.only
    clock = time.monotonic()

    whole = s.fresh("record-whole")
    record_took = s.timed(s.record_args(whole))
    train_whole = s.fresh("train-whole")
    train_took = s.timed(s.train_args(whole, train_whole))

    if want("kill-record"):
        kill_record(s, whole, record_took)
    if want("kill-train"):
        kill_train(s, whole, train_whole, train_took)
    if want("kill-export"):
        kill_export(s, train_whole)
    if want("kill-run"):
        s.trials, saved = (a.run_trials or a.trials), s.trials
        kill_run(s)
        s.trials = saved
    if want("full-disk"):
        if not (s.work / "export-old.gguf").exists():
            s.ok(s.export_args(train_whole, s.work / "export-old.gguf", "q8_0"))
        full_disk(s, whole, whole, train_whole)
    if want("lost-manifest"):
        lost_manifest(s, whole)
    if want("second-writer"):
        second_writer(s, whole)
    if want("corrupt-shard"):
        corrupt_shard(s, whole)
    if want("corrupt-ckpt"):
        corrupt_checkpoint(s, whole)
    if want("corrupt-run"):
        corrupt_run(s)

    took = time.monotonic() - clock
    if s.failed:
        print(f"fault-suite: FAILED {', '.join(s.failed)} ({took:.0f} s)")
        sys.exit(1)
    print(f"fault-suite: all cases survived with no data lost ({took:.0f} s)")


if __name__ == "__main__":
    main()
