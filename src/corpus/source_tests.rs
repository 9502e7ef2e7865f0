//! Unit tests of the prompt-file parser.

use super::*;

fn chat(line: &str) -> Vec<Message> {
    match parse_line(line).expect("valid record") {
        Record::Chat(m) => m,
        Record::Text(t) => panic!("chat record expected, got text {t:?}"),
    }
}

fn roles(line: &str) -> Vec<Role> {
    chat(line).iter().map(|m| m.role).collect()
}

#[test]
fn every_form_is_detected() {
    use Role::*;
    assert_eq!(roles(r#"{"prompt": "hi"}"#), [User]);
    assert_eq!(
        roles(r#"{"prompt": "hi", "response": "yo", "system": "s"}"#),
        [System, User, Assistant]
    );
    assert_eq!(
        roles(
            r#"{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]}"#
        ),
        [System, User]
    );
    assert_eq!(
        roles(
            r#"{"conversations": [{"from": "human", "value": "u"}, {"from": "gpt", "value": "a"}]}"#
        ),
        [User, Assistant]
    );
    assert_eq!(
        roles(r#"{"instruction": "do", "input": "x", "output": "y"}"#),
        [User, Assistant]
    );
    let m = chat(r#"{"instruction": "Sum", "input": "1 2"}"#);
    assert_eq!(m[0].content, "Sum\n\n1 2");
    assert_eq!(
        parse_line(r#"{"text": "Once upon a time"}"#),
        Ok(Record::Text("Once upon a time".into()))
    );
}

#[test]
fn bad_lines_say_what_is_wrong() {
    for (line, want) in [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "JSON object"),
        (r#"{"texts": "x"}"#, "no record found"),
        (r#"{"text": 3}"#, "must be a string"),
        (r#"{"text": " "}"#, "'text' is empty"),
        (r#"{"prompt": 3}"#, "must be a string"),
        (r#"{"prompt": "  "}"#, "empty"),
        (
            r#"{"messages": [{"role": "alien", "content": "x"}]}"#,
            "unknown role",
        ),
        (
            r#"{"messages": [{"role": "assistant", "content": "x"}]}"#,
            "no user turn",
        ),
        (r#"{"messages": []}"#, "is empty"),
    ] {
        let err = parse_line(line).expect_err(line);
        assert!(err.contains(want), "{line}: {err}");
    }
}

#[test]
fn split_response_takes_the_final_assistant_turn() {
    let rec = |line: &str| PromptRecord {
        file: "f".into(),
        line: 1,
        messages: chat(line),
        text: None,
    };
    let r = rec(r#"{"prompt": "q", "response": "a"}"#);
    assert_eq!(r.split_response().1, Some("a"));
    assert_eq!(r.split_response().0.len(), 1);
    assert_eq!(rec(r#"{"prompt": "q"}"#).split_response().1, None);
}

#[test]
fn files_report_the_bad_line_or_skip_it() {
    let dir = std::env::temp_dir().join(format!("distill-src-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("p.jsonl");
    std::fs::write(&path, "{\"prompt\": \"a\"}\n\n{oops\n{\"prompt\": \"b\"}\n").expect("write");
    let err = Source::read(&path, false)
        .expect_err("bad line")
        .to_string();
    assert!(
        err.contains("p.jsonl:3:") && err.contains("--skip-bad"),
        "{err}"
    );
    let src = Source::read(&path, true).expect("skips");
    assert_eq!(
        (src.records.len(), src.skipped, src.records[1].line),
        (2, 1, 4)
    );
    std::fs::write(&path, "\n\n").expect("write");
    assert!(matches!(
        Source::read(&path, false),
        Err(Error::EmptyPrompts(_))
    ));
    // A .txt file is one raw-text record, whatever its lines look like.
    let txt = dir.join("book.txt");
    std::fs::write(&txt, "{\"prompt\": \"not json here\"}\nChapter one.\n").expect("write");
    let src = Source::read(&txt, false).expect("txt");
    assert_eq!(src.records.len(), 1);
    assert!(
        src.records[0]
            .text
            .as_deref()
            .is_some_and(|t| t.contains("Chapter one"))
    );
    assert_eq!(kinds(&[src]), (true, false));
    std::fs::remove_dir_all(dir).ok();
}
