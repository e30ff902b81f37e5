#![allow(clippy::unwrap_used, clippy::needless_pass_by_value)]

use serde_json::{json, Value};

use super::*;
use crate::scim_protocol::ENTERPRISE_USER_SCHEMA;

fn patched(resource: Value, body: Value) -> Result<Value, ScimError> {
    let operations = parse_request(&body)?;
    let Value::Object(mut object) = resource else {
        panic!("a resource is an object")
    };
    apply(&mut object, &operations)?;
    Ok(Value::Object(object))
}

fn ops(operations: Value) -> Value {
    json!({"schemas": [PATCH_OP_SCHEMA], "Operations": operations})
}

fn user() -> Value {
    json!({
        "id": "u-1",
        "userName": "ada@example.com",
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "active": true,
    })
}

fn group(members: &[&str]) -> Value {
    json!({
        "id": "g-1",
        "displayName": "Engineering",
        "members": members.iter().map(|m| json!({"value": m})).collect::<Vec<_>>(),
    })
}

fn member_ids(group: &Value) -> Vec<&str> {
    group["members"]
        .as_array()
        .map(|members| {
            members
                .iter()
                .map(|m| m["value"].as_str().unwrap())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn okta_deactivates_and_renames_with_no_path_values() {
    let user = patched(
        user(),
        ops(json!([{"op": "replace", "value": {"active": false}}])),
    )
    .unwrap();
    assert_eq!(user["active"], json!(false));
    // Okta repeats the group's own id in a rename.
    let group = patched(
        group(&["u-1"]),
        ops(json!([{"op": "replace", "value": {"id": "g-1", "displayName": "Test SCIMv2"}}])),
    )
    .unwrap();
    assert_eq!(group["displayName"], json!("Test SCIMv2"));
    assert_eq!(member_ids(&group), ["u-1"]);
}

#[test]
fn entra_capitalised_ops_and_boolean_strings() {
    let user = patched(
        user(),
        ops(json!([{"op": "Replace", "path": "active", "value": "False"}])),
    )
    .unwrap();
    assert_eq!(user["active"], json!(false));
    let user = patched(
        user,
        ops(json!([{"op": "REPLACE", "path": "ACTIVE", "value": "True"}])),
    )
    .unwrap();
    assert_eq!(
        user["active"],
        json!(true),
        "an existing attribute keeps its spelling"
    );
    assert!(user.get("ACTIVE").is_none());
}

#[test]
fn okta_filtered_removal_and_addition_in_one_request() {
    let group = patched(
        group(&["u-1", "u-2"]),
        ops(json!([
            {"op": "remove", "path": "members[value eq \"u-1\"]"},
            {"op": "add", "path": "members", "value": [{"value": "u-3", "display": "c@example.com"}]}
        ])),
    )
    .unwrap();
    assert_eq!(member_ids(&group), ["u-2", "u-3"]);
}

#[test]
fn entra_member_changes_add_and_remove_by_value_list() {
    let group = patched(
        group(&["u-1"]),
        ops(json!([
            {"op": "Add", "path": "members", "value": [{"$ref": null, "value": "u-2"}, {"value": "u-3"}]},
            {"op": "Add", "path": "members", "value": [{"value": "u-1"}]},
            {"op": "Remove", "path": "members", "value": [{"value": "u-3"}, {"value": "u-9"}]}
        ])),
    )
    .unwrap();
    assert_eq!(
        member_ids(&group),
        ["u-1", "u-2"],
        "no duplicate, non-members ignored"
    );
    // Removing someone who is not a member changes nothing and is no error.
    let same = patched(
        group.clone(),
        ops(json!([{"op": "remove", "path": "members[value eq \"u-9\"]"}])),
    )
    .unwrap();
    assert_eq!(same, group);
    // Removing the whole attribute.
    let empty = patched(group, ops(json!([{"op": "remove", "path": "members"}]))).unwrap();
    assert!(empty.get("members").is_none());
}

#[test]
fn a_thousand_members_in_one_request_all_apply() {
    let members: Vec<Value> = (0..1000)
        .map(|i| json!({"value": format!("u-{i}")}))
        .collect();
    let group = patched(
        group(&[]),
        ops(json!([{"op": "add", "path": "members", "value": members}])),
    )
    .unwrap();
    assert_eq!(member_ids(&group).len(), 1000);
}

#[test]
fn enterprise_attributes_by_urn_path_and_manager_as_a_string() {
    let user = patched(
        user(),
        ops(json!([
            {"op": "Replace", "path": format!("{ENTERPRISE_USER_SCHEMA}:employeeNumber"), "value": "Eqpj"},
            {"op": "Add", "path": format!("{ENTERPRISE_USER_SCHEMA}:manager"), "value": "m-7"}
        ])),
    )
    .unwrap();
    assert_eq!(
        user[ENTERPRISE_USER_SCHEMA]["employeeNumber"],
        json!("Eqpj")
    );
    assert_eq!(
        user[ENTERPRISE_USER_SCHEMA]["manager"],
        json!({"value": "m-7"})
    );
}

#[test]
fn the_extension_urn_alone_as_a_path_names_the_whole_extension_object() {
    // scim2-tester's PATCH checks: `add` of the whole extension, then `remove` of it.
    let added = patched(
        user(),
        ops(json!([
            {"op": "add", "path": ENTERPRISE_USER_SCHEMA, "value": {"employeeNumber": "E-1", "department": "Eng"}}
        ])),
    )
    .unwrap();
    assert_eq!(
        added[ENTERPRISE_USER_SCHEMA],
        json!({"employeeNumber": "E-1", "department": "Eng"})
    );
    assert_eq!(added.as_object().unwrap().len(), 5, "{added}");
    let removed = patched(
        added,
        ops(json!([{"op": "remove", "path": ENTERPRISE_USER_SCHEMA.to_lowercase()}])),
    )
    .unwrap();
    assert_eq!(removed, user());
}

#[test]
fn no_path_values_with_dotted_and_urn_keys() {
    let user = patched(
        user(),
        ops(json!([{"op": "replace", "value": {
            "displayName": "Bjfe",
            "name.givenName": "Kkom",
            format!("{ENTERPRISE_USER_SCHEMA}:employeeNumber"): "Aklq",
            ENTERPRISE_USER_SCHEMA: {"department": "R&D"}
        }}])),
    )
    .unwrap();
    assert_eq!(user["displayName"], json!("Bjfe"));
    assert_eq!(
        user["name"],
        json!({"givenName": "Kkom", "familyName": "Lovelace"})
    );
    assert_eq!(
        user[ENTERPRISE_USER_SCHEMA],
        json!({"employeeNumber": "Aklq", "department": "R&D"})
    );
}

#[test]
fn an_extension_urn_in_any_letter_case_names_the_schema_not_an_attribute() {
    // Found by tests/it/scim_patch_oracle.rs: `…:2.0:user` was taken for an attribute "user"
    // of a schema "…:2.0", and `…:User:Manager` for a schema.
    let user = patched(
        user(),
        ops(json!([{"op": "replace", "value": {
            ENTERPRISE_USER_SCHEMA.to_ascii_lowercase(): {"department": "R&D"},
            format!("{ENTERPRISE_USER_SCHEMA}:Manager"): {"value": "m-1"}
        }}])),
    )
    .unwrap();
    assert_eq!(
        user[ENTERPRISE_USER_SCHEMA],
        json!({"department": "R&D", "Manager": {"value": "m-1"}})
    );
    assert!(
        user.as_object().unwrap().len() == 5,
        "no stray top-level key: {user}"
    );
}

#[test]
fn a_filtered_path_on_an_attribute_that_does_not_exist_yet_creates_the_element() {
    let user = patched(
        user(),
        ops(json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "ada@work.example"}])),
    )
    .unwrap();
    assert_eq!(
        user["emails"],
        json!([{"type": "work", "value": "ada@work.example"}])
    );
    // The second time it matches the element and changes it.
    let user = patched(
        user,
        ops(json!([
            {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "ada@new.example"},
            {"op": "add", "path": "emails[type eq \"work\"].primary", "value": "True"}
        ])),
    )
    .unwrap();
    assert_eq!(
        user["emails"],
        json!([{"type": "work", "value": "ada@new.example", "primary": true}])
    );
}

#[test]
fn sub_attributes_replace_and_remove() {
    let user = patched(
        user(),
        ops(json!([
            {"op": "replace", "path": "name", "value": {"familyName": "Byron"}},
            {"op": "remove", "path": "name.givenName"}
        ])),
    )
    .unwrap();
    assert_eq!(user["name"], json!({"familyName": "Byron"}));
}

#[test]
fn what_cannot_be_applied_is_refused_with_the_right_scim_type() {
    let cases = [
        (
            json!([{"op": "move", "path": "active", "value": false}]),
            ScimType::InvalidSyntax,
        ),
        (
            json!([{"op": "add", "path": "name..x", "value": 1}]),
            ScimType::InvalidPath,
        ),
        (
            json!([{"op": "add", "path": "emails[type eq]", "value": 1}]),
            ScimType::InvalidPath,
        ),
        (json!([{"op": "remove"}]), ScimType::NoTarget),
        (
            json!([{"op": "replace", "path": "members[value eq \"nobody\"]", "value": {"value": "x"}}]),
            ScimType::NoTarget,
        ),
        (
            json!([{"op": "replace", "path": "id", "value": "other"}]),
            ScimType::Mutability,
        ),
        (
            json!([{"op": "replace", "path": "active", "value": "maybe"}]),
            ScimType::InvalidValue,
        ),
        (
            json!([{"op": "add", "path": "members", "value": [{"display": "no id"}]}]),
            ScimType::InvalidValue,
        ),
        (
            json!([{"op": "add", "path": "members", "value": ["u-2"]}]),
            ScimType::InvalidValue,
        ),
        (
            json!([{"op": "replace", "value": "not an object"}]),
            ScimType::InvalidValue,
        ),
        (
            json!([{"op": "add", "path": "active"}]),
            ScimType::InvalidValue,
        ),
    ];
    for (operations, want) in cases {
        let err = patched(group(&["u-1"]), ops(operations.clone())).unwrap_err();
        assert_eq!(err.scim_type, Some(want), "{operations}: {err}");
        assert_eq!(err.status, 400, "{operations}");
        assert!(err.detail.starts_with("Operations[0]"), "{err}");
    }
    let err = patched(user(), json!({"schemas": ["urn:x"], "Operations": []})).unwrap_err();
    assert_eq!(err.scim_type, Some(ScimType::InvalidSyntax));
    let err = patched(user(), json!({"schemas": [PATCH_OP_SCHEMA]})).unwrap_err();
    assert_eq!(err.scim_type, Some(ScimType::InvalidSyntax));
}

#[test]
fn a_value_made_primary_is_the_only_primary_one() {
    let user = json!({
        "id": "u-1",
        "userName": "ada@example.com",
        "emails": [{"type": "work", "value": "ada@work.example", "primary": true}],
    });
    // Entra's filtered path, the flag as a string.
    let home = patched(
        user.clone(),
        ops(json!([
            {"op": "Add", "path": "emails[type eq \"home\"].value", "value": "ada@home.example"},
            {"op": "Replace", "path": "emails[type eq \"home\"].primary", "value": "True"}
        ])),
    )
    .unwrap();
    assert_eq!(
        home["emails"],
        json!([{"type": "work", "value": "ada@work.example", "primary": false},
               {"type": "home", "value": "ada@home.example", "primary": true}])
    );
    // An added primary value.
    let added = patched(
        user.clone(),
        ops(json!([{"op": "add", "path": "emails", "value": [{"value": "ada@new.example", "primary": true}]}])),
    )
    .unwrap();
    assert_eq!(added["emails"][0]["primary"], json!(false));
    assert_eq!(added["emails"][1]["primary"], json!(true));
    // Changing the primary value's own address keeps it the one primary.
    let renamed = patched(
        user,
        ops(json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "ada@corp.example"}])),
    )
    .unwrap();
    assert_eq!(
        renamed["emails"],
        json!([{"type": "work", "value": "ada@corp.example", "primary": true}])
    );
}
