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
        // The case numbers: the 8050 household first, then the young-carer household.
        "synced as 2026-0001",
        "case number: 2026-0002",
        // Both counsellors' activities, with their narratives.
        "家庭訪問 [自宅] 不在・手紙を残した by 佐藤: インターホンに応答なし。長男の自転車あり。玄関に手紙を残した。",
        "置き手紙 [自宅] 手紙・チラシ・リーフレット → 郵便受け by 伊藤: 学校の欠席が続いているため、ヤングケアラー支援のチラシを郵便受けへ。",
        "連絡・接触 [電話] 電話 応答なし by 伊藤: 母の携帯に電話、応答なし。留守電は残さず。",
        // The supervisor's review, written through the API and received by 佐藤.
        "長男の登校状況を学校（スクールソーシャルワーカー）に確認してください。",
        // The note both counsellors amended offline, merged.
        "メモ (note): 【伊藤】通院を中断している。医療費の相談先を案内予定。",
        // The household with its concern labels.
        "経済的困窮",
        "ヤングケアラー",
        // A third counsellor's case opened in the field.
        "鈴木    opens a hoarding case in the field",
        // The meeting tablet holds the agenda's case only, and deletes it after the meeting.
        "it holds 1 case(s), only the agenda's",
        "the tablet deletes the case (meeting_ended)",
        "all three replicas hold the same record",
        // The conflict was settled: one value everywhere.
        "状態 (status): 関係性構築 (outreach)",
        "-- no conflicts --",
        // The duplicate household, merged; the phone that held it deletes it.
        "possible duplicate: 2026-0",
        "17b. 田中   merges 2026-0004 into 2026-0003",
        "the duplicate is deleted from the phone (merged)",
        // What changed since the supervisor's review.
        "since the last review: 1 new, 0 amended",
        // A call on a case suspended meanwhile: stored, flagged, counted.
        "arrives after the suspension (1 change(s) up",
        "late entry on 2026-0001: 連絡・接触",
        // A refused upload: the reasons on the phone, the supervisor's decision back to it.
        "refused (not_own_activity: only the counsellor who logged an activity amends it)",
        "and is kept on the phone",
        "(GET /v1/quarantine/mine): rejected — 「次回の訪問予定は",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
    let review =
        stdout.lines().find(|l| l.contains("review by 田中")).unwrap_or_else(|| panic!("no review in:\n{stdout}"));
    assert!(review.contains("長男の登校状況"), "{review}");
    let conflict = stdout
        .lines()
        .find(|l| l.contains("conflict on /status"))
        .unwrap_or_else(|| panic!("no status conflict in the attention queue:\n{stdout}"));
    assert!(conflict.contains("outreach") && conflict.contains("planning"), "{conflict}");
    assert!(conflict.contains("佐藤") && conflict.contains("伊藤"), "{conflict}");
    assert!(stdout.contains("concurrent amendment of /household/"), "{stdout}");

    // The month's figures match what the field day logged, as its visit log shows it.
    let log: Vec<&str> = stdout.lines().filter_map(|l| l.trim().strip_prefix("visit-log ")).collect();
    assert_eq!(log.len(), 7, "{stdout}");
    let count = |needle: &str| log.iter().filter(|l| l.contains(needle)).count() as i64;
    let figure = |key: &str| -> String {
        let prefix = format!("figure {key} ");
        let line = stdout
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no figure {key} in:\n{stdout}"));
        line.rsplit(" = ").next().unwrap().to_owned()
    };
    let number = |key: &str| figure(key).parse::<i64>().unwrap_or_else(|_| panic!("figure {key}: {}", figure(key)));
    assert_eq!(number("visits"), count("家庭訪問"));
    assert_eq!(number("letters_left"), count("置き手紙") + count("手紙を残した"));
    assert_eq!(number("contact_attempts"), count("連絡・接触"));
    assert_eq!(number("consultations"), count("相談対応"));
    assert_eq!(number("visits_met"), count("家庭訪問 会えた"));
    // The 8050 household's consultation: its first, so a new person.
    assert_eq!((number("new_persons"), number("continuing_persons"), number("persons")), (1, 0, 1));
    assert_eq!(figure("met_share"), "0.0");
    assert_eq!((number("visits"), number("letters_left"), number("contact_attempts")), (2, 2, 3));
    assert!(stdout.contains("figure topic:elderly_care 高齢・介護 = 1"), "{stdout}");
    assert!(stdout.contains("figure topic:withdrawal ひきこもり = 1"), "{stdout}");

    assert!(!work.path().join("tsunagi-data").exists(), "the demo left tsunagi-data in the working directory");
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "the demo left files in TMPDIR: {left:?}");
}
