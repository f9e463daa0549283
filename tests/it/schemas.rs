//! The JSON Schemas in `amqp-schemas/` and the serde wire types in `dmf_broker::dmf` describe the
//! same message bodies (spec §3, §4). These tests hold the two together through the examples in
//! `amqp-schemas/examples/{valid,invalid}/<schema-stem>/*.json`:
//!
//! * a valid example matches its schema and round-trips through its Rust type (outbound: byte for
//!   byte, since member order is part of the contract; inbound: as JSON values);
//! * an invalid example is rejected by its schema and by its Rust type;
//! * every wire type has a schema, and every public type of the wire modules appears in one.
//!
//! The lenient inbound forms (integers as strings, `message` as one string) cannot round-trip, so
//! they are checked here with inline bodies rather than as example files.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use dmf_broker::dmf::{inbound, outbound, topic};
use jsonschema::Validator;
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// Which way a body travels; decides how strictly a valid example must round-trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Connector → server: member order carries no meaning (§2.5), compare as JSON values.
    Inbound,
    /// Server → connector: we write the bytes, compare them exactly.
    Outbound,
}

/// The message bodies, by the `x-rust-type` their schema names. A new wire type needs a row here,
/// an arm in [`reserialize`] and a schema.
const WIRE_TYPES: [(&str, Direction); 8] = [
    ("dmf::inbound::ThingCreated", Direction::Inbound),
    ("dmf::inbound::AttributeUpdate", Direction::Inbound),
    ("dmf::inbound::ActionUpdateStatus", Direction::Inbound),
    ("dmf::inbound::AutoConfirm", Direction::Inbound),
    ("dmf::outbound::DownloadRequest", Direction::Outbound),
    ("dmf::outbound::ActionRequest", Direction::Outbound),
    ("dmf::outbound::BatchDownloadRequest", Direction::Outbound),
    (
        "Vec<dmf::outbound::MultiActionElement>",
        Direction::Outbound,
    ),
];

/// Deserializes `text` into `T` and serializes it again.
fn roundtrip<T: DeserializeOwned + Serialize>(text: &str) -> Result<String, String> {
    let value: T = serde_json::from_str(text).map_err(|e| e.to_string())?;
    Ok(serde_json::to_string(&value).expect("a wire type always serializes"))
}

/// [`roundtrip`] through the Rust type a schema's `x-rust-type` names.
fn reserialize(rust_type: &str, text: &str) -> Result<String, String> {
    match rust_type {
        "dmf::inbound::ThingCreated" => roundtrip::<inbound::ThingCreated>(text),
        "dmf::inbound::AttributeUpdate" => roundtrip::<inbound::AttributeUpdate>(text),
        "dmf::inbound::ActionUpdateStatus" => roundtrip::<inbound::ActionUpdateStatus>(text),
        "dmf::inbound::AutoConfirm" => roundtrip::<inbound::AutoConfirm>(text),
        "dmf::outbound::DownloadRequest" => roundtrip::<outbound::DownloadRequest>(text),
        "dmf::outbound::ActionRequest" => roundtrip::<outbound::ActionRequest>(text),
        "dmf::outbound::BatchDownloadRequest" => roundtrip::<outbound::BatchDownloadRequest>(text),
        "Vec<dmf::outbound::MultiActionElement>" => {
            roundtrip::<Vec<outbound::MultiActionElement>>(text)
        }
        other => panic!("x-rust-type {other:?} is not mapped to a Rust type in reserialize()"),
    }
}

fn direction(rust_type: &str) -> Direction {
    WIRE_TYPES
        .iter()
        .find(|(name, _)| *name == rust_type)
        .unwrap_or_else(|| panic!("x-rust-type {rust_type:?} is not listed in WIRE_TYPES"))
        .1
}

// ---------------------------------------------------------------------------------------------
// Loading schemas and examples
// ---------------------------------------------------------------------------------------------

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn schema_dir() -> PathBuf {
    crate_dir().join("amqp-schemas")
}

struct Schema {
    /// File name without `.schema.json`; names the example folders.
    stem: String,
    json: Value,
    rust_type: String,
}

impl Schema {
    fn validator(&self) -> Validator {
        jsonschema::validator_for(&self.json)
            .unwrap_or_else(|e| panic!("{}.schema.json does not compile: {e}", self.stem))
    }
}

/// Every `amqp-schemas/*.schema.json`, sorted by name.
fn schemas() -> Vec<Schema> {
    let mut out = Vec::new();
    for entry in fs::read_dir(schema_dir()).expect("amqp-schemas/ is readable") {
        let path = entry.expect("directory entry").path();
        let Some(stem) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".schema.json"))
        else {
            continue;
        };
        let text = fs::read_to_string(&path).expect("schema file is readable");
        let json: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        let rust_type = json["x-rust-type"]
            .as_str()
            .unwrap_or_else(|| panic!("{} has no string x-rust-type", path.display()))
            .to_owned();
        out.push(Schema {
            stem: stem.to_owned(),
            json,
            rust_type,
        });
    }
    out.sort_by(|a, b| a.stem.cmp(&b.stem));
    assert_eq!(
        out.len(),
        WIRE_TYPES.len(),
        "expected one schema per wire type in amqp-schemas/"
    );
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Valid,
    Invalid,
}

impl Kind {
    fn folder(self) -> &'static str {
        match self {
            Kind::Valid => "valid",
            Kind::Invalid => "invalid",
        }
    }
}

struct Example {
    /// `valid/<stem>/<name>.json`, for messages.
    label: String,
    text: String,
}

/// The examples of one kind for one schema, sorted by file name; none if the folder is missing.
fn examples(kind: Kind, stem: &str) -> Vec<Example> {
    let dir = schema_dir().join("examples").join(kind.folder()).join(stem);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| Example {
            label: format!(
                "{}/{stem}/{}",
                kind.folder(),
                path.file_name().unwrap().to_string_lossy()
            ),
            text: fs::read_to_string(&path).expect("example file is readable"),
        })
        .collect()
}

impl Example {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", self.label))
    }
}

/// Calls `check` for every example of `kind` with its schema; returns how many there were.
fn for_each_example(kind: Kind, mut check: impl FnMut(&Schema, &Example)) -> usize {
    let mut count = 0;
    for schema in schemas() {
        for example in examples(kind, &schema.stem) {
            check(&schema, &example);
            count += 1;
        }
    }
    count
}

fn schema_errors(validator: &Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| format!("at {:?}: {e}", e.instance_path.to_string()))
        .collect()
}

/// Whether JSON text has whitespace outside strings (i.e. is not compact).
fn has_insignificant_whitespace(text: &str) -> bool {
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else if c.is_whitespace() {
            return true;
        }
    }
    false
}

/// Every `x-rust-type` anywhere in a schema (top level and `$defs`).
fn rust_types_in(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, member) in map {
                match (key.as_str(), member) {
                    ("x-rust-type", Value::String(name)) => {
                        out.insert(name.clone());
                    }
                    _ => rust_types_in(member, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| rust_types_in(item, out)),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// The schemas themselves
// ---------------------------------------------------------------------------------------------

#[test]
fn every_schema_is_a_valid_draft_2020_12_schema_with_title_and_description() {
    let schemas = schemas();
    for schema in &schemas {
        let name = format!("{}.schema.json", schema.stem);
        assert_eq!(schema.json["$schema"], DRAFT_2020_12, "{name}: $schema");
        if let Err(e) = jsonschema::meta::validate(&schema.json) {
            panic!("{name} is not a valid JSON Schema: {e}");
        }
        schema.validator();
        for key in ["title", "description"] {
            let text = schema.json[key].as_str().unwrap_or_default();
            assert!(!text.trim().is_empty(), "{name} needs a non-empty {key}");
        }
        assert!(
            schema.json["description"].as_str().unwrap().contains('§'),
            "{name}: the description should name the spec section"
        );
    }
    assert!(!schemas.is_empty());
}

#[test]
fn every_schema_has_at_least_two_valid_and_three_invalid_examples() {
    for schema in schemas() {
        let valid = examples(Kind::Valid, &schema.stem).len();
        let invalid = examples(Kind::Invalid, &schema.stem).len();
        assert!(valid >= 2, "{}: only {valid} valid examples", schema.stem);
        assert!(
            invalid >= 3,
            "{}: only {invalid} invalid examples",
            schema.stem
        );
    }
}

#[test]
fn every_example_folder_belongs_to_a_schema() {
    let stems: BTreeSet<String> = schemas().into_iter().map(|s| s.stem).collect();
    let mut folders = 0;
    for kind in [Kind::Valid, Kind::Invalid] {
        let dir = schema_dir().join("examples").join(kind.folder());
        for entry in fs::read_dir(&dir).expect("examples folder is readable") {
            let name = entry.expect("directory entry").file_name();
            let name = name.to_string_lossy();
            assert!(
                stems.contains(name.as_ref()),
                "{}/{name} has no schema",
                kind.folder()
            );
            folders += 1;
        }
    }
    assert_eq!(folders, 2 * stems.len());
}

#[test]
fn shared_definitions_are_identical_in_every_schema_that_carries_them() {
    let mut seen: BTreeMap<String, (String, Value)> = BTreeMap::new();
    let mut shared = 0;
    for schema in schemas() {
        let Some(defs) = schema.json["$defs"].as_object() else {
            continue;
        };
        for (name, definition) in defs {
            match seen.get(name) {
                Some((first, earlier)) => {
                    assert_eq!(
                        earlier, definition,
                        "$defs/{name} differs between {first} and {}",
                        schema.stem
                    );
                    shared += 1;
                }
                None => {
                    seen.insert(name.clone(), (schema.stem.clone(), definition.clone()));
                }
            }
        }
    }
    assert!(shared > 0, "expected $defs shared between schemas");
}

// ---------------------------------------------------------------------------------------------
// Examples against schemas
// ---------------------------------------------------------------------------------------------

#[test]
fn every_valid_example_matches_its_schema() {
    let mut current: Option<(String, Validator)> = None;
    let count = for_each_example(Kind::Valid, |schema, example| {
        if current
            .as_ref()
            .is_none_or(|(stem, _)| *stem != schema.stem)
        {
            current = Some((schema.stem.clone(), schema.validator()));
        }
        let validator = &current.as_ref().unwrap().1;
        let errors = schema_errors(validator, &example.json());
        assert!(
            errors.is_empty(),
            "{} does not match its schema:\n{}",
            example.label,
            errors.join("\n")
        );
    });
    assert!(count > 0, "no valid examples found");
}

#[test]
fn every_invalid_example_is_rejected_by_its_schema() {
    let count = for_each_example(Kind::Invalid, |schema, example| {
        assert!(
            !schema.validator().is_valid(&example.json()),
            "{} is accepted by {}.schema.json",
            example.label,
            schema.stem
        );
    });
    assert!(count > 0, "no invalid examples found");
}

#[test]
fn every_valid_example_is_compact_json_on_one_line() {
    let count = for_each_example(Kind::Valid, |_, example| {
        let text = example.text.trim_end_matches('\n');
        assert!(
            !has_insignificant_whitespace(text),
            "{} is not compact (whitespace outside strings)",
            example.label
        );
        example.json();
    });
    assert!(count > 0, "no valid examples found");
}

// ---------------------------------------------------------------------------------------------
// Examples against Rust types
// ---------------------------------------------------------------------------------------------

#[test]
fn every_valid_example_round_trips_through_its_rust_type() {
    let mut outbound_checked = 0;
    let count = for_each_example(Kind::Valid, |schema, example| {
        let text = example.text.trim();
        let written = reserialize(&schema.rust_type, text).unwrap_or_else(|e| {
            panic!(
                "{} does not deserialize into {}: {e}",
                example.label, schema.rust_type
            )
        });
        match direction(&schema.rust_type) {
            Direction::Outbound => {
                assert_eq!(
                    written, text,
                    "{}: {} re-serializes to different bytes",
                    example.label, schema.rust_type
                );
                outbound_checked += 1;
            }
            Direction::Inbound => {
                let written: Value = serde_json::from_str(&written).unwrap();
                assert_eq!(
                    written,
                    example.json(),
                    "{}: {} re-serializes to a different value",
                    example.label,
                    schema.rust_type
                );
            }
        }
    });
    assert!(
        count > outbound_checked && outbound_checked > 0,
        "need inbound and outbound examples"
    );
}

#[test]
fn every_invalid_example_is_rejected_by_its_rust_type() {
    let count = for_each_example(Kind::Invalid, |schema, example| {
        if let Ok(written) = reserialize(&schema.rust_type, example.text.trim()) {
            panic!(
                "{} is accepted by {} (read as {written})",
                example.label, schema.rust_type
            );
        }
    });
    assert!(count > 0, "no invalid examples found");
}

#[test]
fn every_wire_type_has_exactly_one_schema_and_every_schema_a_wire_type() {
    let schemas = schemas();
    for (rust_type, _) in WIRE_TYPES {
        let owners: Vec<&str> = schemas
            .iter()
            .filter(|s| s.rust_type == rust_type)
            .map(|s| s.stem.as_str())
            .collect();
        assert_eq!(
            owners.len(),
            1,
            "{rust_type} is the x-rust-type of {owners:?}"
        );
    }
    for schema in &schemas {
        direction(&schema.rust_type);
        // Panics for a name that reserialize() does not map; `{}` is a body of no type.
        let _ = reserialize(&schema.rust_type, "{}");
    }
}

/// A public struct or enum added to `src/dmf/inbound.rs` or `src/dmf/outbound.rs` is a wire shape
/// and must be described by some schema (as a body or as a `$defs` entry with `x-rust-type`).
#[test]
fn every_public_type_of_the_wire_modules_appears_in_a_schema() {
    let mut described = BTreeSet::new();
    for schema in schemas() {
        rust_types_in(&schema.json, &mut described);
    }
    let mut found = 0;
    for module in ["inbound", "outbound"] {
        let path = crate_dir().join("src/dmf").join(format!("{module}.rs"));
        let source = fs::read_to_string(&path).expect("wire module is readable");
        for line in source.lines() {
            let Some(rest) = line
                .strip_prefix("pub struct ")
                .or_else(|| line.strip_prefix("pub enum "))
            else {
                continue;
            };
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let qualified = format!("dmf::{module}::{name}");
            assert!(
                described.contains(&qualified) || described.contains(&format!("Vec<{qualified}>")),
                "{qualified} is not the x-rust-type of any schema or $defs entry"
            );
            found += 1;
        }
    }
    assert!(
        found >= WIRE_TYPES.len(),
        "found only {found} public types in src/dmf"
    );
}

// ---------------------------------------------------------------------------------------------
// Enumerations: schema, Rust type and examples agree
// ---------------------------------------------------------------------------------------------

fn schema_named(stem: &str) -> Schema {
    schemas()
        .into_iter()
        .find(|s| s.stem == stem)
        .expect("schema exists")
}

fn string_set(values: &Value) -> BTreeSet<String> {
    values
        .as_array()
        .expect("an enum array")
        .iter()
        .map(|v| v.as_str().expect("a string").to_owned())
        .collect()
}

#[test]
fn the_action_status_enum_matches_the_rust_statuses_and_each_appears_in_a_valid_example() {
    let rust: BTreeSet<String> = inbound::ReportStatus::ALL
        .iter()
        .map(|s| {
            serde_json::to_value(s)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(rust.len(), 11);
    let schema = schema_named("update-action-status");
    assert_eq!(
        string_set(&schema.json["$defs"]["ReportedStatus"]["enum"]),
        rust
    );

    let used: BTreeSet<String> = examples(Kind::Valid, "update-action-status")
        .iter()
        .map(|e| e.json()["actionStatus"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(used, rust, "every actionStatus value needs a valid example");
}

#[test]
fn the_attribute_mode_enum_matches_the_rust_modes_and_each_appears_in_a_valid_example() {
    use inbound::AttributeMode::{Merge, Remove, Replace};
    let rust: BTreeSet<String> = [Merge, Replace, Remove]
        .iter()
        .map(|m| {
            serde_json::to_value(m)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for stem in ["update-attributes", "thing-created"] {
        let schema = schema_named(stem);
        assert_eq!(
            string_set(&schema.json["$defs"]["AttributeMode"]["enum"]),
            rust,
            "{stem}"
        );
    }
    let used: BTreeSet<String> = examples(Kind::Valid, "update-attributes")
        .iter()
        .filter_map(|e| e.json()["mode"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        used, rust,
        "every mode needs a valid update-attributes example"
    );
}

#[test]
fn the_multi_action_topics_are_the_four_deployment_topics_and_each_appears_in_a_valid_example() {
    let expected: BTreeSet<String> = [
        topic::DOWNLOAD_AND_INSTALL,
        topic::DOWNLOAD,
        topic::CONFIRM,
        topic::CANCEL_DOWNLOAD,
    ]
    .map(str::to_owned)
    .into();
    let schema = schema_named("multi-action");
    let element = &schema.json["$defs"]["MultiActionElement"];
    assert_eq!(
        string_set(&element["properties"]["topic"]["enum"]),
        expected
    );

    let mut used = BTreeSet::new();
    for example in examples(Kind::Valid, "multi-action") {
        for element in example.json().as_array().unwrap() {
            used.insert(element["topic"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(
        used, expected,
        "every topic needs a valid multi-action example"
    );
}

// ---------------------------------------------------------------------------------------------
// hawkBit's lenient inbound forms (§2.5): accepted by schema and type, read as the strict form
// ---------------------------------------------------------------------------------------------

#[test]
fn lenient_action_status_forms_match_the_schema_and_read_as_the_strict_form() {
    let validator = schema_named("update-action-status").validator();
    let cases = [
        (
            json!({"actionId":"137","actionStatus":"RUNNING","message":"Installing",
                   "code":"17","softwareModuleId":"7","timestamp":"1704070800000"}),
            json!({"actionId":137,"actionStatus":"RUNNING","message":["Installing"],
                   "code":17,"softwareModuleId":7,"timestamp":1704070800000_i64}),
        ),
        (
            json!({"actionId":137,"actionStatus":"FINISHED","message":null,"code":null}),
            json!({"actionId":137,"actionStatus":"FINISHED"}),
        ),
        (
            json!({"actionId":137,"actionStatus":"ERROR","vendorDetail":{"x":1}}),
            json!({"actionId":137,"actionStatus":"ERROR"}),
        ),
    ];
    for (lenient, strict) in cases {
        let errors = schema_errors(&validator, &lenient);
        assert!(
            errors.is_empty(),
            "{lenient} does not match the schema: {errors:?}"
        );
        let read: inbound::ActionUpdateStatus = serde_json::from_value(lenient.clone()).unwrap();
        assert_eq!(serde_json::to_value(&read).unwrap(), strict, "{lenient}");
    }
}

#[test]
fn unknown_inbound_members_are_allowed_by_schema_and_type() {
    let cases = [
        ("thing-created", json!({"name":"Pump","firmware":{"rev":3}})),
        (
            "update-attributes",
            json!({"attributes":{"a":"b"},"source":"agent"}),
        ),
        ("update-auto-confirm", json!({"enabled":true,"extra":[1,2]})),
    ];
    for (stem, body) in cases {
        let schema = schema_named(stem);
        let errors = schema_errors(&schema.validator(), &body);
        assert!(
            errors.is_empty(),
            "{stem}: {body} does not match: {errors:?}"
        );
        reserialize(&schema.rust_type, &body.to_string())
            .unwrap_or_else(|e| panic!("{stem}: {body} is rejected by the type: {e}"));
    }
}

/// Rules the schemas state that serde does not check (so they cannot be invalid *examples*, which
/// both must reject): the §3.3 attribute limits, and the exact outbound shapes we promise to write.
#[test]
fn schema_only_rules_reject_bodies_the_serde_types_would_read() {
    let long = "k".repeat(129);
    let artifact = |hashes: Value| {
        json!({"actionId":1,"targetSecurityToken":"t","softwareModules":[{"moduleId":7,
            "moduleType":"os","moduleVersion":"1","artifacts":[{"filename":"f","hashes":hashes,
            "size":1,"lastModified":0,"urls":{}}]}]})
    };
    let module = |extra: Value| {
        let mut m = json!({"moduleId":7,"moduleType":"os","moduleVersion":"1","artifacts":[]});
        m.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!({"actionId":1,"targetSecurityToken":"t","softwareModules":[m]})
    };
    let deployment = json!({"actionId":1,"targetSecurityToken":"t","softwareModules":[]});
    let cases = [
        (
            "update-attributes",
            json!({"attributes":{"a`b":"1"}}),
            "backtick in key",
        ),
        (
            "update-attributes",
            json!({"attributes":{"a":"~"}}),
            "tilde in value",
        ),
        (
            "update-attributes",
            json!({"attributes":{"ort":"Köln"}}),
            "non-ASCII value",
        ),
        (
            "update-attributes",
            json!({"attributes":{"":"1"}}),
            "empty key",
        ),
        (
            "update-attributes",
            json!({"attributes":{long.clone():"1"}}),
            "key of 129",
        ),
        (
            "thing-created",
            json!({"attributeUpdate":{"attributes":{"a":long}}}),
            "value of 129",
        ),
        (
            "thing-created",
            json!({"name":"n".repeat(129)}),
            "name of 129",
        ),
        (
            "download-request",
            artifact(json!({"sha1":null,"md5":null,"sha256":"00"})),
            "sha256",
        ),
        (
            "download-request",
            artifact(json!({"md5":null})),
            "sha1 missing",
        ),
        (
            "download-request",
            artifact(json!({"sha1":"ABC","md5":null})),
            "upper-case sha1",
        ),
        (
            "download-request",
            module(json!({"encrypted":false})),
            "encrypted false",
        ),
        (
            "download-request",
            module(json!({"metadata":[]})),
            "empty metadata",
        ),
        (
            "download-request",
            json!({"actionId":1,"targetSecurityToken":"t",
            "softwareModules":[],"weight":5}),
            "unknown member",
        ),
        (
            "batch-download-request",
            json!({"timestamp":1,"targets":[],"softwareModules":[]}),
            "no targets",
        ),
        ("multi-action", json!([]), "empty list"),
        (
            "multi-action",
            json!([{"topic":"DOWNLOAD","action":deployment,"weight":1001}]),
            "weight 1001",
        ),
        (
            "multi-action",
            json!([{"topic":"DOWNLOAD","action":deployment,"weight":-1}]),
            "negative weight",
        ),
        (
            "multi-action",
            json!([{"topic":"MULTI_ACTION","action":deployment,"weight":5}]),
            "unknown topic",
        ),
        (
            "multi-action",
            json!([{"topic":"CANCEL_DOWNLOAD","action":deployment,"weight":5}]),
            "cancel with deployment shape",
        ),
        (
            "multi-action",
            json!([{"topic":"DOWNLOAD","action":{"actionId":1},"weight":5}]),
            "deployment with cancel shape",
        ),
    ];
    for (stem, body, what) in cases {
        assert!(
            !schema_named(stem).validator().is_valid(&body),
            "{stem}.schema.json accepts a body with {what}: {body}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Whatever the outbound types write from sane values matches the schemas
// ---------------------------------------------------------------------------------------------

fn hex(len: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[0-9a-f]{{{len}}}")).unwrap()
}

fn artifact() -> impl Strategy<Value = outbound::Artifact> {
    (
        "[a-zA-Z0-9._ -]{1,20}",
        proptest::option::of(hex(40)),
        proptest::option::of(hex(32)),
        0..=i64::MAX,
        0..=i64::MAX,
        proptest::collection::btree_map(
            prop_oneof![Just("HTTP".to_owned()), Just("HTTPS".to_owned())],
            "https?://[a-z]{1,10}/[a-z0-9/]{0,20}",
            0..=2,
        ),
    )
        .prop_map(
            |(filename, sha1, md5, size, last_modified, urls)| outbound::Artifact {
                filename,
                hashes: outbound::Hashes { sha1, md5 },
                size,
                last_modified,
                urls,
            },
        )
}

fn software_module() -> impl Strategy<Value = outbound::SoftwareModule> {
    (
        any::<i64>(),
        "[a-z]{1,12}",
        "[0-9a-z.-]{1,12}",
        any::<bool>(),
        proptest::collection::vec(artifact(), 0..3),
        proptest::collection::vec(("[a-zA-Z]{1,8}", ".{0,12}"), 0..3),
    )
        .prop_map(
            |(module_id, module_type, module_version, encrypted, artifacts, metadata)| {
                outbound::SoftwareModule {
                    module_id,
                    module_type,
                    module_version,
                    encrypted,
                    artifacts,
                    metadata: metadata
                        .into_iter()
                        .map(|(key, value)| outbound::Metadata { key, value })
                        .collect(),
                }
            },
        )
}

fn download_request() -> impl Strategy<Value = outbound::DownloadRequest> {
    (
        any::<i64>(),
        hex(32),
        proptest::collection::vec(software_module(), 0..3),
    )
        .prop_map(|(action_id, target_security_token, software_modules)| {
            outbound::DownloadRequest {
                action_id,
                target_security_token,
                software_modules,
            }
        })
}

fn multi_action_element() -> impl Strategy<Value = outbound::MultiActionElement> {
    let payload = prop_oneof![
        (any::<i64>()).prop_map(|action_id| (
            topic::CANCEL_DOWNLOAD,
            outbound::MultiActionPayload::Cancel(outbound::ActionRequest { action_id })
        )),
        (
            prop_oneof![
                Just(topic::DOWNLOAD_AND_INSTALL),
                Just(topic::DOWNLOAD),
                Just(topic::CONFIRM)
            ],
            download_request()
        )
            .prop_map(|(t, r)| (t, outbound::MultiActionPayload::Deployment(r))),
    ];
    (payload, 0..=1000_i32).prop_map(|((t, action), weight)| outbound::MultiActionElement {
        topic: t.to_owned(),
        action,
        weight,
    })
}

/// Serializes `body`, checks it against the schema and reads it back unchanged.
fn assert_written_body_matches<T>(validator: &Validator, body: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let text = serde_json::to_string(body).unwrap();
    let errors = schema_errors(validator, &serde_json::from_str(&text).unwrap());
    assert!(
        errors.is_empty(),
        "{text} does not match its schema:\n{}",
        errors.join("\n")
    );
    let back: T = serde_json::from_str(&text).unwrap();
    assert_eq!(&back, body, "{text} reads back differently");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn every_written_download_request_matches_its_schema(body in download_request()) {
        let validator = schema_named("download-request").validator();
        assert_written_body_matches(&validator, &body);
    }

    #[test]
    fn every_written_cancel_matches_its_schema(action_id in any::<i64>()) {
        let validator = schema_named("cancel-download").validator();
        assert_written_body_matches(&validator, &outbound::ActionRequest { action_id });
    }

    #[test]
    fn every_written_batch_request_matches_its_schema(
        timestamp in any::<i64>(),
        targets in proptest::collection::vec((any::<i64>(), "[a-zA-Z0-9_.-]{1,40}", hex(32)), 1..4),
        software_modules in proptest::collection::vec(software_module(), 0..3),
    ) {
        let validator = schema_named("batch-download-request").validator();
        let body = outbound::BatchDownloadRequest {
            timestamp,
            targets: targets
                .into_iter()
                .map(|(action_id, controller_id, target_security_token)| outbound::BatchTarget {
                    action_id,
                    controller_id,
                    target_security_token,
                })
                .collect(),
            software_modules,
        };
        assert_written_body_matches(&validator, &body);
    }

    #[test]
    fn every_written_multi_action_matches_its_schema(
        body in proptest::collection::vec(multi_action_element(), 1..5),
    ) {
        let validator = schema_named("multi-action").validator();
        assert_written_body_matches(&validator, &body);
    }
}
