use super::*;

fn load(src: &str) -> Result<Script, ScriptError> {
    Script::from_source("routes.lua", src)
}

#[test]
fn a_syntax_error_names_file_and_line() {
    let e = load("function request_route(req)\n  x = = 1\nend\n").unwrap_err();
    let ScriptError::Lua {
        file,
        line,
        message,
    } = &e
    else {
        panic!("{e:?}");
    };
    assert_eq!((file.as_str(), *line), ("routes.lua", 2), "{e}");
    assert!(message.contains("unexpected symbol"), "{message}");
    assert!(e.to_string().starts_with("routes.lua:2: "), "{e}");
}

#[test]
fn an_error_at_the_top_level_names_its_line() {
    let e = load("\n\nerror('no config')\nfunction request_route(req) end").unwrap_err();
    assert!(e.to_string().starts_with("routes.lua:3: no config"), "{e}");
}

#[test]
fn a_script_without_request_route_does_not_load() {
    let e = load("function reply_route_x(r) end").unwrap_err();
    assert_eq!(e.to_string(), "routes.lua: no request_route function");
}

#[test]
fn a_missing_file_is_a_read_error() {
    let e = Script::load(Path::new("/nonexistent/routes.lua")).unwrap_err();
    assert!(matches!(e, ScriptError::Read { .. }), "{e:?}");
}

#[test]
fn the_sandbox_keeps_only_what_routing_needs() {
    let s = load(
        "assert(io == nil and package == nil and require == nil and load == nil)
         assert(dofile == nil and loadfile == nil and debug == nil and pcall == nil)
         assert(os.execute == nil and os.getenv == nil and os.remove == nil)
         assert(type(os.time()) == 'number' and type(os.clock()) == 'number')
         assert(string.format('%d', 3) == '3' and math.max(1, 2) == 2 and table.concat({'a'}) == 'a')
         function request_route(req) end",
    );
    assert!(s.is_ok(), "{s:?}");
}

#[test]
fn a_top_level_loop_is_stopped_at_load() {
    let e = load("while true do end\nfunction request_route(req) end").unwrap_err();
    assert!(e.to_string().contains("instruction limit"), "{e}");
}

#[test]
fn locations_split_off_lua_messages() {
    assert_eq!(split_location("routes.lua:12: boom"), (12, "boom"));
    assert_eq!(split_location("C:/x/routes.lua:7: a: b"), (7, "a: b"));
    assert_eq!(split_location("no place"), (0, "no place"));
}
