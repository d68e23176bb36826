//! The `script` task kind, driven through `jobpool::task::script::ScriptEngine`.

use std::time::{Duration, Instant};

use jobpool::task::script::{ScriptEngine, ScriptErrorKind, ScriptLimits};
use serde_json::{Value, json};

fn never() -> bool {
    false
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn eval(
    source: &str,
    arg_names: &[&str],
    args: &[Value],
) -> Result<Value, jobpool::task::script::ScriptError> {
    ScriptEngine::compile(source, &names(arg_names))?.eval(args, &never, None)
}

#[test]
fn arguments_are_variables_by_name() {
    let engine = ScriptEngine::compile("x * x + y", &names(&["x", "y"])).unwrap();
    for x in 0..50 {
        assert_eq!(engine.eval(&[json!(x), json!(1)], &never, None).unwrap(), json!(x * x + 1));
    }
    assert_eq!(eval("x * 2.0", &["x"], &[json!(1.25)]).unwrap(), json!(2.5));
    assert_eq!(eval("s + \"!\"", &["s"], &[json!("hi")]).unwrap(), json!("hi!"));
}

#[test]
fn args_map_reaches_names_that_are_not_identifiers() {
    let r = eval("args[\"my-arg\"] + args.x", &["my-arg", "x"], &[json!(40), json!(2)]).unwrap();
    assert_eq!(r, json!(42));
    // An argument named `args` wins over the map.
    assert_eq!(eval("args + 1", &["args"], &[json!(1)]).unwrap(), json!(2));
}

#[test]
fn json_values_round_trip_through_the_script() {
    let value = json!({"list": [1, -2.5, "s", false, null], "nested": {"k": [true]}});
    assert_eq!(eval("v", &["v"], std::slice::from_ref(&value)).unwrap(), value);
    assert_eq!(eval("v.list[1]", &["v"], std::slice::from_ref(&value)).unwrap(), json!(-2.5));
    assert_eq!(eval("#{a: 1, b: [2, ()]}", &[], &[]).unwrap(), json!({"a": 1, "b": [2, null]}));
    assert_eq!(eval("()", &[], &[]).unwrap(), Value::Null);
    assert_eq!(eval("let a = 1;", &[], &[]).unwrap(), Value::Null);
}

#[test]
fn statements_functions_and_spec_example() {
    let src =
        "fn sq(v) { v * v }\nlet value = random();\nsleep(value / 100.0);\narg1 + sq(arg2) + value";
    let engine = ScriptEngine::compile(src, &names(&["arg1", "arg2"])).unwrap();
    let r = engine.eval(&[json!(1), json!(3)], &never, None).unwrap().as_f64().unwrap();
    assert!((10.0..11.0).contains(&r), "{r}");
}

#[test]
fn random_is_in_unit_interval() {
    let engine = ScriptEngine::compile("random()", &[]).unwrap();
    let values: Vec<f64> =
        (0..1000).map(|_| engine.eval(&[], &never, None).unwrap().as_f64().unwrap()).collect();
    assert!(values.iter().all(|r| (0.0..1.0).contains(r)));
    assert!(values.windows(2).any(|w| w[0] != w[1]), "random() is not constant");
}

#[test]
fn runtime_errors_carry_line_and_column() {
    let err = eval("let a = 1;\nlet b = a + y;\nb", &[], &[]).unwrap_err();
    assert_eq!(err.kind, ScriptErrorKind::Runtime);
    assert_eq!((err.line, err.column), (Some(2), Some(13)));
    assert_eq!(err.message, "Variable not found: y");
    assert_eq!(err.to_string(), "script error at line 2, column 13: Variable not found: y");

    let err = eval("throw \"custom failure\"", &[], &[]).unwrap_err();
    assert_eq!(err.kind, ScriptErrorKind::Runtime);
    assert!(err.message.contains("custom failure"), "{err}");
    assert_eq!(err.line, Some(1));
}

#[test]
fn syntax_errors_carry_line_and_column() {
    let err = ScriptEngine::compile("let x = 1;\nlet = 5;", &[]).unwrap_err();
    assert_eq!(err.kind, ScriptErrorKind::Syntax);
    assert_eq!(err.line, Some(2));
    assert!(err.column.is_some());
    assert!(err.to_string().starts_with("script syntax error at line 2, column "), "{err}");
}

#[test]
fn sandbox_refuses_import_eval_and_system_access() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("secret.rhai");
    std::fs::write(&module, "export const secret = 42;").unwrap();
    let src =
        format!("import {:?} as m; m::secret", module.to_str().unwrap().trim_end_matches(".rhai"));
    assert!(ScriptEngine::compile(&src, &[]).is_err(), "import must not compile");

    let err = eval("eval(\"40 + 2\")", &[], &[]).unwrap_err();
    assert!(err.to_string().contains("eval"), "{err}");

    for call in [
        "open_file(\"/etc/passwd\")",
        "system(\"touch x\")",
        "read_file(\"/etc/passwd\")",
        "exec(\"ls\")",
    ] {
        let err = eval(call, &[], &[]).unwrap_err();
        assert_eq!(err.kind, ScriptErrorKind::Runtime, "{call}");
        assert!(err.message.starts_with("Function not found"), "{call}: {err}");
    }
}

#[test]
fn print_and_debug_are_silent_and_harmless() {
    assert_eq!(eval("print(\"hello\"); debug(1); 5", &[], &[]).unwrap(), json!(5));
}

#[test]
fn limits_stop_runaway_scripts() {
    let small = ScriptLimits { max_operations: 10_000, ..ScriptLimits::default() };
    let engine = ScriptEngine::compile_with_limits("loop { }", &[], small).unwrap();
    let err = engine.eval(&[], &never, None).unwrap_err();
    assert_eq!(err.kind, ScriptErrorKind::Runtime);
    assert!(err.message.starts_with("Too many operations"), "{err}");
    assert!(err.message.contains("10000"), "{err}");

    let err = eval("let s = \"ab\"; loop { s += s; }", &[], &[]).unwrap_err();
    assert!(err.message.contains("Length of string"), "{err}");

    let err = eval("let a = [1]; loop { a += a; }", &[], &[]).unwrap_err();
    assert!(err.message.contains("Size of array"), "{err}");

    let small = ScriptLimits { max_map_size: 100, ..ScriptLimits::default() };
    let engine = ScriptEngine::compile_with_limits(
        "let m = #{}; for i in 0..1000 { m.set(`k${i}`, i); } m",
        &[],
        small,
    )
    .unwrap();
    let err = engine.eval(&[], &never, None).unwrap_err();
    assert!(err.message.contains("Size of object map"), "{err}");

    let err = eval("fn f(x) { f(x + 1) } f(0)", &[], &[]).unwrap_err();
    assert!(err.to_string().contains("Stack overflow"), "{err}");
}

#[test]
fn deadline_stops_a_busy_loop_and_sleep() {
    for src in ["loop { }", "sleep(60)", "sleep(60.5)", "try { sleep(60) } catch { 42 }"] {
        let engine = ScriptEngine::compile(src, &[]).unwrap();
        let start = Instant::now();
        let err = engine.eval(&[], &never, Some(start + Duration::from_millis(200))).unwrap_err();
        assert_eq!(err.kind, ScriptErrorKind::Timeout, "{src}: {err}");
        assert_eq!(err.to_string(), "timed out");
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(200), "{src}: {elapsed:?}");
        assert!(elapsed < Duration::from_secs(10), "{src}: {elapsed:?}");
    }
}

#[test]
fn should_stop_stops_a_busy_loop_and_sleep() {
    for src in ["loop { }", "sleep(60)"] {
        let engine = ScriptEngine::compile(src, &[]).unwrap();
        let start = Instant::now();
        let stop = || start.elapsed() >= Duration::from_millis(150);
        let err = engine.eval(&[], &stop, None).unwrap_err();
        assert_eq!(err.kind, ScriptErrorKind::Stopped, "{src}: {err}");
        assert_eq!(err.to_string(), "stopped");
        assert!(start.elapsed() < Duration::from_secs(10));
    }
    // A deadline already passed: nothing runs.
    let engine = ScriptEngine::compile("42", &[]).unwrap();
    let err = engine.eval(&[], &never, Some(Instant::now())).unwrap_err();
    assert_eq!(err.kind, ScriptErrorKind::Timeout);
}

#[test]
fn sleep_sleeps_and_ignores_nonsense_durations() {
    let engine =
        ScriptEngine::compile("sleep(0.2); sleep(0); sleep(-3); sleep(0.0 / 0.0); 1", &[]).unwrap();
    let start = Instant::now();
    assert_eq!(engine.eval(&[], &never, None).unwrap(), json!(1));
    assert!(start.elapsed() >= Duration::from_millis(200));
}

#[test]
fn engine_is_shareable_between_threads() {
    let engine = std::sync::Arc::new(ScriptEngine::compile("x + 1", &names(&["x"])).unwrap());
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                for i in 0..500 {
                    let v = t * 1000 + i;
                    assert_eq!(engine.eval(&[json!(v)], &never, None).unwrap(), json!(v + 1));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn errors_inside_functions_point_into_the_function() {
    let src = "fn inner(a) {\n  a + q\n}\nfn outer(b) { inner(b) }\nouter(1)";
    let err = eval(src, &[], &[]).unwrap_err();
    assert_eq!((err.line, err.column), (Some(2), Some(7)), "{err}");
    assert_eq!(
        err.message,
        "Variable not found: q (in function 'inner' called at line 4, column 15) (in function 'outer' called at line 5, column 1)"
    );
}
