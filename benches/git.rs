//! Git adapter benchmark: a repository with 1,000 plans and 10,000 commits behind `file://`.
//! Measures the first full read, one new commit, status commit + push latency, and pushes per
//! second while 1,000 rollouts transition at once (coalesced by the writer).
//!
//! Run: `cargo bench --bench git`. Results go into docs/benchmarks.md (`## Git`).

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use git2::{FileMode, Oid, Repository, Signature, build::TreeUpdateBuilder};
use tidegate::git::{GitConfig, GitRepo, PlanSource, StateStore, StatusWriter};
use tidegate::plan::RolloutId;
use tidegate::rollout::{Phase, RouteState, Status};

/// Sizes: the full benchmark under `cargo bench` (which passes `--bench`), a smoke run of the
/// same code under `cargo test --all-targets`.
struct Size {
    plans: usize,
    commits: usize,
    rounds: u8,
    samples: usize,
}

const FULL: Size = Size {
    plans: 1_000,
    commits: 10_000,
    rounds: 5,
    samples: 30,
};
const SMOKE: Size = Size {
    plans: 40,
    commits: 200,
    rounds: 2,
    samples: 3,
};

fn plan_path(i: usize) -> String {
    format!("rollouts/team-{:02}/svc-{i:04}.yaml", i % 20)
}

fn plan_text(i: usize, rev: usize) -> String {
    format!(
        "apiVersion: tidegate.dev/v1alpha1\nkind: Rollout\nmetadata:\n  name: svc-{i:04}\n  namespace: team-{:02}\nspec:\n  service: svc-{i:04}\n  stable: v1\n  canary: v2-{rev}\n  steps:\n    - setWeight: 10\n    - analyze: 1m\n    - setWeight: 50\n    - setWeight: 100\n  analysis:\n    interval: 30s\n    metrics:\n      - name: success-rate\n        template: istio-success-rate\n        min: 99\n",
        i % 20
    )
}

/// Append a commit changing `files` on `main` of the bare repository.
fn commit_files(
    repo: &Repository,
    parent: Option<Oid>,
    files: &[(String, String)],
    msg: &str,
) -> Oid {
    let sig = Signature::now("Dev", "dev@example.com").expect("sig");
    let mut upd = TreeUpdateBuilder::new();
    for (p, t) in files {
        let blob = repo.blob(t.as_bytes()).expect("blob");
        upd.upsert(p.as_str(), blob, FileMode::Blob);
    }
    let parent_commit = parent.map(|p| repo.find_commit(p).expect("parent"));
    let base = match &parent_commit {
        Some(c) => c.tree().expect("tree"),
        None => {
            let empty = repo
                .treebuilder(None)
                .expect("tb")
                .write()
                .expect("empty tree");
            repo.find_tree(empty).expect("tree")
        }
    };
    let tree_id = upd.create_updated(repo, &base).expect("tree update");
    let tree = repo.find_tree(tree_id).expect("tree");
    let parents: Vec<&git2::Commit<'_>> = parent_commit.iter().collect();
    let oid = repo
        .commit(None, &sig, &sig, msg, &tree, &parents)
        .expect("commit");
    repo.reference("refs/heads/main", oid, true, "bench")
        .expect("ref");
    oid
}

fn build_remote(dir: &Path, size: &Size) -> (Repository, Oid) {
    let repo = Repository::init_bare(dir.join("plans.git")).expect("init");
    let files: Vec<(String, String)> = (0..size.plans)
        .map(|i| (plan_path(i), plan_text(i, 0)))
        .collect();
    let mut tip = commit_files(&repo, None, &files, "the plans");
    for c in 1..size.commits {
        let i = (c * 7919) % size.plans;
        let f = if c % 5 == 0 {
            (format!("docs/notes-{}.md", c % 50), format!("note {c}\n"))
        } else {
            (plan_path(i), plan_text(i, c))
        };
        tip = commit_files(&repo, Some(tip), &[f], &format!("change {c}"));
    }
    repo.set_head("refs/heads/main").expect("head");
    (repo, tip)
}

fn status(i: usize, weight: u8) -> Status {
    let at = Utc
        .with_ymd_and_hms(2026, 11, 30, 7, 0, 0)
        .single()
        .expect("time");
    let id = RolloutId {
        namespace: format!("team-{:02}", i % 20),
        name: format!("svc-{i:04}"),
    };
    Status {
        phase: Phase::Progressing,
        step: 1,
        route: RouteState {
            canary_weight: weight,
            header_route: None,
            mirror_percent: 0,
        },
        read_back: Default::default(),
        reason: format!("step to {weight}%"),
        ..Status::fresh(&id, &Default::default(), 4, at)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let idx = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[idx]
}

fn config(remote: &Path, data: &Path) -> GitConfig {
    let mut c = GitConfig::new(format!("file://{}", remote.display()), data);
    c.author.email = "tidegate@example.com".into();
    c
}

fn main() {
    let size = if std::env::args().any(|a| a == "--bench") {
        FULL
    } else {
        SMOKE
    };
    let (plans_n, commits_n) = (size.plans, size.commits);
    let dir = tempfile::tempdir().expect("tempdir");
    let t = Instant::now();
    let (remote, mut tip) = build_remote(dir.path(), &size);
    let remote_path = dir.path().join("plans.git");
    println!(
        "built {plans_n} plans / {commits_n} commits in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // 1. First full read: fresh mirror, fetch everything, read every plan, find each revision.
    let mut first = Vec::new();
    let mut fetch_only = Vec::new();
    for run in 0..3 {
        let data = dir.path().join(format!("data-first-{run}"));
        let t = Instant::now();
        let mut repo = GitRepo::open(config(&remote_path, &data)).expect("open");
        repo.fetch().expect("fetch");
        fetch_only.push(t.elapsed());
        let update = repo.poll().expect("poll");
        first.push(t.elapsed());
        assert_eq!(update.plans.changed.len(), plans_n);
    }
    // 1b. Restart with the mirror kept in the data directory: incremental fetch, full read.
    let mut warm = Vec::new();
    for _ in 0..3 {
        let data = dir.path().join("data-first-0");
        let t = Instant::now();
        let mut repo = GitRepo::open(config(&remote_path, &data)).expect("open");
        let update = repo.poll().expect("poll");
        warm.push(t.elapsed());
        assert_eq!(update.plans.changed.len(), plans_n);
    }
    let warm_med = percentile(&mut warm, 0.5);
    let first_med = percentile(&mut first, 0.5);
    let fetch_med = percentile(&mut fetch_only, 0.5);

    // 2. One new commit (one plan changed), seen by a warm mirror.
    let data = dir.path().join("data");
    let mut repo = GitRepo::open(config(&remote_path, &data)).expect("open");
    repo.poll().expect("poll");
    let mut one = Vec::new();
    for k in 0..size.samples {
        let i = (k * 31) % plans_n;
        tip = commit_files(
            &remote,
            Some(tip),
            &[(plan_path(i), plan_text(i, commits_n + k))],
            "one more",
        );
        let t = Instant::now();
        let update = repo.poll().expect("poll");
        one.push(t.elapsed());
        assert_eq!(update.plans.changed.len(), 1);
        assert_eq!(update.commits.len(), 1);
    }
    let one_p50 = percentile(&mut one, 0.5);
    let one_p95 = percentile(&mut one, 0.95);

    // 3. Status commit + push latency (one transition, no contention).
    let mut push = Vec::new();
    for k in 0..size.samples {
        let t = Instant::now();
        let out = repo
            .write_statuses(&[status(k % plans_n, (k % 100) as u8)], None)
            .expect("write");
        push.push(t.elapsed());
        assert_eq!(out.attempts, 1);
    }
    let push_p50 = percentile(&mut push, 0.5);
    let push_p95 = percentile(&mut push, 0.95);

    // 4. 1,000 rollouts transitioning at once, then every second, for 5 s; window 1 s.
    let (writer, handle, reports) = StatusWriter::spawn(repo, Duration::from_secs(1));
    let t = Instant::now();
    let mut submitted = 0usize;
    for round in 0..size.rounds {
        let round_start = t + Duration::from_secs(round as u64);
        if let Some(wait) = round_start.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        for i in 0..plans_n {
            handle.submit(status(i, 10 + round * 10));
            submitted += 1;
        }
    }
    // No flush (it writes at once, for shutdown): wait for the writer's own rhythm.
    let mut pushes = 0usize;
    let mut transitions = 0usize;
    let mut write_times = Vec::new();
    while transitions < submitted {
        let r = reports
            .recv_timeout(Duration::from_secs(60))
            .expect("writer report");
        let out = r.result.expect("coalesced write");
        if out.commit.is_some() {
            pushes += 1;
        }
        transitions += out.transitions;
        write_times.push(r.took);
    }
    let elapsed = t.elapsed();
    drop(handle);
    writer.join();
    assert_eq!(transitions, submitted, "no transition lost or duplicated");
    let write_p50 = percentile(&mut write_times, 0.5);
    let pushes_per_s = pushes as f64 / elapsed.as_secs_f64();

    // 5. The same over smart HTTP (`git http-backend`: the server builds the pack, as in
    //    production), with token authentication.
    let http = http_measurements(dir.path(), &remote_path, &size);

    println!();
    println!("| measurement | result |");
    println!("|---|---|");
    println!(
        "| first full read (fresh mirror: fetch + {plans_n} plans + revisions over {commits_n} commits), median of 3 | {:.0} ms (of which the initial fetch {:.0} ms) |",
        ms(first_med),
        ms(fetch_med)
    );
    println!(
        "| restart with the mirror kept in the data directory (fetch + full read), median of 3 | {:.0} ms |",
        ms(warm_med)
    );
    println!(
        "| one new commit changing one plan (fetch + diff + re-read + commit walk), p50 / p95 of {} | {:.1} ms / {:.1} ms |",
        size.samples,
        ms(one_p50),
        ms(one_p95)
    );
    println!(
        "| status commit + push, one transition, p50 / p95 of {} | {:.1} ms / {:.1} ms |",
        size.samples,
        ms(push_p50),
        ms(push_p95)
    );
    println!(
        "| {plans_n} rollouts transitioning every second for {} s ({submitted} transitions), 1 s window | {pushes} pushes in {:.1} s = {pushes_per_s:.2} pushes/s, {} transitions per push, p50 write {:.0} ms |",
        size.rounds,
        elapsed.as_secs_f64(),
        transitions / pushes.max(1),
        ms(write_p50)
    );
    println!(
        "| over smart HTTP (git http-backend behind a Python CGI bridge): first full read / one new commit p50 / status commit + push p50 | {:.0} ms / {:.1} ms / {:.1} ms |",
        ms(http.0),
        ms(http.1),
        ms(http.2)
    );
}

/// (first full read, one new commit p50, status push p50) against `git http-backend`.
fn http_measurements(
    dir: &Path,
    remote_path: &Path,
    size: &Size,
) -> (Duration, Duration, Duration) {
    use std::io::{BufRead, BufReader};
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/git_http_server.py");
    let token = "bench-token";
    let mut child = std::process::Command::new("python3")
        .arg(&script)
        .arg(remote_path.parent().expect("parent"))
        .arg(token)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start python3 tests/support/git_http_server.py (Debian packages python3, git)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("port");
    let port: u16 = line
        .trim()
        .trim_start_matches("listening on ")
        .parse()
        .expect("port");
    let token_file = dir.join("bench-token");
    std::fs::write(&token_file, token).expect("token");
    let mut cfg = config(remote_path, &dir.join("data-http"));
    cfg.url = format!("http://127.0.0.1:{port}/plans.git");
    cfg.auth = tidegate::git::Auth::Token {
        username: "tidegate".into(),
        token: tidegate::git::SecretSource::File(token_file),
    };
    let t = Instant::now();
    let mut repo = GitRepo::open(cfg).expect("open");
    let update = repo.poll().expect("poll over http");
    let first = t.elapsed();
    assert_eq!(update.plans.changed.len(), size.plans);
    let remote = Repository::open_bare(remote_path).expect("remote");
    let mut one = Vec::new();
    let mut push = Vec::new();
    for k in 0..size.samples.min(10) {
        let i = (k * 17) % size.plans;
        let tip = remote.refname_to_id("refs/heads/main").expect("tip");
        commit_files(
            &remote,
            Some(tip),
            &[(plan_path(i), plan_text(i, 2 * size.commits + k))],
            "over http",
        );
        let t = Instant::now();
        let update = repo.poll().expect("poll");
        one.push(t.elapsed());
        assert_eq!(update.plans.changed.len(), 1);
        let t = Instant::now();
        repo.write_statuses(&[status(i, (k % 100) as u8)], None)
            .expect("push over http");
        push.push(t.elapsed());
    }
    let _ = child.kill();
    let _ = child.wait();
    (first, percentile(&mut one, 0.5), percentile(&mut push, 0.5))
}
