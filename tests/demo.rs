//! `tsunagi demo --exit`: the real binary, with nothing configured, plays the field day on an
//! embedded server and prints the merged record; it leaves nothing in the working directory.

use std::process::Command;

#[test]
fn the_demo_plays_a_field_day_and_prints_the_merged_record() {
    let work = tempfile::tempdir().expect("a working directory");
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let mut command = Command::new(env!("CARGO_BIN_EXE_tsunagi"));
    command.args(["demo", "--exit"]).current_dir(work.path()).env_clear().env("TMPDIR", tmp.path());
    for name in ["PATH", "HOME"] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    let output = command.output().expect("the binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}", output.status.code());

    for expected in [
        // The case number line.
        "case number: 2026-0001",
        // Both counsellors' activities, with their narratives.
        "家庭訪問 [自宅] 不在・手紙を残した by 佐藤: インターホンに応答なし。長男の自転車あり。玄関に手紙を残した。",
        "置き手紙 [自宅] 手紙・チラシ・リーフレット → 郵便受け by 伊藤: 学校の欠席が続いているため、ヤングケアラー支援のチラシを郵便受けへ。",
        "連絡・接触 [電話] 電話 応答なし by 伊藤: 母の携帯に電話、応答なし。留守電は残さず。",
        // The supervisor's review, received by 佐藤.
        "review by 田中 (18:30): 長男の登校状況を学校（スクールソーシャルワーカー）に確認してください。",
        // The household with its concern labels.
        "経済的困窮",
        "ヤングケアラー",
        "all three replicas hold the same record",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
    let conflict = stdout
        .lines()
        .find(|l| l.contains("conflict on /status"))
        .unwrap_or_else(|| panic!("no status conflict in:\n{stdout}"));
    assert!(conflict.contains("outreach") && conflict.contains("planning"), "{conflict}");
    assert!(conflict.contains("佐藤") && conflict.contains("伊藤"), "{conflict}");

    assert!(!work.path().join("tsunagi-data").exists(), "the demo left tsunagi-data in the working directory");
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "the demo left files in TMPDIR: {left:?}");
}
