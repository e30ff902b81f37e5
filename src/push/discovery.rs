//! The discovery endpoints (RFC 7644 §4): what dirsync supports, its resource types, and the
//! schemas of User (with the enterprise extension) and Group (RFC 7643 §4, §8.7.1).

use serde_json::{json, Value};

use crate::scim_protocol::{ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, USER_SCHEMA};

/// Results a list returns at most per page (`count` above it is lowered to it).
pub const MAX_RESULTS: usize = 1000;

pub fn service_provider_config(base_url: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": "https://github.com/dirsync/dirsync#scim-20-push",
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": false},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "The tenant's token (its token_file), as Authorization: Bearer <token>",
            "primary": true
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base_url}/ServiceProviderConfig")
        }
    })
}

pub fn resource_types(base_url: &str) -> Vec<Value> {
    vec![user_type(base_url), group_type(base_url)]
}

pub fn user_type(base_url: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "User Account",
        "schema": USER_SCHEMA,
        "schemaExtensions": [{"schema": ENTERPRISE_USER_SCHEMA, "required": false}],
        "meta": {"resourceType": "ResourceType", "location": format!("{base_url}/ResourceTypes/User")}
    })
}

pub fn group_type(base_url: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": "Group",
        "name": "Group",
        "endpoint": "/Groups",
        "description": "Group",
        "schema": GROUP_SCHEMA,
        "meta": {"resourceType": "ResourceType", "location": format!("{base_url}/ResourceTypes/Group")}
    })
}

/// One attribute definition with RFC 7643 §7's characteristics.
fn attribute(name: &str, kind: &str, multi: bool, description: &str) -> Value {
    json!({
        "name": name,
        "type": kind,
        "multiValued": multi,
        "description": description,
        "required": false,
        "caseExact": false,
        "mutability": "readWrite",
        "returned": "default",
        "uniqueness": "none"
    })
}

fn with(mut attribute: Value, changes: Value) -> Value {
    if let (Some(fields), Value::Object(changes)) = (attribute.as_object_mut(), changes) {
        fields.extend(changes);
    }
    attribute
}

fn complex(name: &str, multi: bool, description: &str, subs: Vec<Value>) -> Value {
    let mut attribute = attribute(name, "complex", multi, description);
    attribute["subAttributes"] = Value::Array(subs);
    attribute
}

fn string(name: &str, description: &str) -> Value {
    attribute(name, "string", false, description)
}

/// `value`, `display`, `type`, `primary` of a multi-valued attribute such as `emails`.
fn multi_valued(name: &str, description: &str, types: &[&str]) -> Value {
    complex(
        name,
        true,
        description,
        vec![
            string("value", "The value"),
            string("display", "A human-readable name"),
            with(string("type", "A label"), json!({"canonicalValues": types})),
            attribute("primary", "boolean", false, "The primary value"),
        ],
    )
}

pub fn schemas(base_url: &str) -> Vec<Value> {
    vec![
        user_schema(base_url),
        enterprise_schema(base_url),
        group_schema(base_url),
    ]
}

pub fn schema(base_url: &str, id: &str) -> Option<Value> {
    schemas(base_url).into_iter().find(|schema| {
        schema["id"]
            .as_str()
            .is_some_and(|known| known.eq_ignore_ascii_case(id))
    })
}

fn schema_meta(base_url: &str, id: &str) -> Value {
    json!({"resourceType": "Schema", "location": format!("{base_url}/Schemas/{id}")})
}

fn user_schema(base_url: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": USER_SCHEMA,
        "name": "User",
        "description": "User Account",
        "attributes": [
            with(string("userName", "Unique identifier for the User"), json!({"required": true, "uniqueness": "server"})),
            complex("name", false, "The components of the user's name", vec![
                string("formatted", "The full name"),
                string("familyName", "The family name"),
                string("givenName", "The given name"),
                string("middleName", "The middle name"),
                string("honorificPrefix", "The honorific prefix"),
                string("honorificSuffix", "The honorific suffix"),
            ]),
            string("displayName", "The name of the User, suitable for display"),
            string("nickName", "The casual way to address the user"),
            with(attribute("profileUrl", "reference", false, "A URI of the user's profile"), json!({"referenceTypes": ["external"]})),
            string("title", "The user's title"),
            string("userType", "The relationship between the organization and the user"),
            string("preferredLanguage", "The user's preferred written or spoken language"),
            string("locale", "The user's default location"),
            string("timezone", "The user's time zone"),
            attribute("active", "boolean", false, "The user's administrative status"),
            with(string("password", "Accepted, never stored or returned"), json!({"mutability": "writeOnly", "returned": "never"})),
            multi_valued("emails", "Email addresses for the user", &["work", "home", "other"]),
            multi_valued("phoneNumbers", "Phone numbers for the user", &["work", "home", "mobile", "fax", "pager", "other"]),
            complex("addresses", true, "A physical mailing address for this user", vec![
                string("formatted", "The full mailing address"),
                string("streetAddress", "The full street address"),
                string("locality", "The city or locality"),
                string("region", "The state or region"),
                string("postalCode", "The zip code or postal code"),
                string("country", "The country name"),
                with(string("type", "A label"), json!({"canonicalValues": ["work", "home", "other"]})),
                attribute("primary", "boolean", false, "The primary address"),
            ]),
            with(complex("groups", true, "The groups the user belongs to, directly (read-only)", vec![
                with(string("value", "The group's id"), json!({"mutability": "readOnly"})),
                with(attribute("$ref", "reference", false, "The URI of the group"), json!({"mutability": "readOnly", "referenceTypes": ["Group"]})),
                with(string("display", "The group's display name"), json!({"mutability": "readOnly"})),
                with(string("type", "direct"), json!({"mutability": "readOnly", "canonicalValues": ["direct"]})),
            ]), json!({"mutability": "readOnly"})),
            multi_valued("roles", "Roles for the user", &[]),
            multi_valued("entitlements", "Entitlements of the user", &[]),
        ],
        "meta": schema_meta(base_url, USER_SCHEMA)
    })
}

fn enterprise_schema(base_url: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": ENTERPRISE_USER_SCHEMA,
        "name": "EnterpriseUser",
        "description": "Enterprise User",
        "attributes": [
            string("employeeNumber", "A string identifier, typically numeric or alphanumeric, assigned to a person"),
            string("costCenter", "The name of a cost center"),
            string("organization", "The name of an organization"),
            string("division", "The name of a division"),
            string("department", "The name of a department"),
            complex("manager", false, "The user's manager", vec![
                string("value", "The id of the manager's User"),
                with(attribute("$ref", "reference", false, "The URI of the manager's User"), json!({"referenceTypes": ["User"]})),
                with(string("displayName", "The manager's display name"), json!({"mutability": "readOnly"})),
            ]),
        ],
        "meta": schema_meta(base_url, ENTERPRISE_USER_SCHEMA)
    })
}

fn group_schema(base_url: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": GROUP_SCHEMA,
        "name": "Group",
        "description": "Group",
        "attributes": [
            with(string("displayName", "A human-readable name for the Group"), json!({"required": true})),
            complex("members", true, "A list of members of the Group", vec![
                with(string("value", "The id of a member"), json!({"mutability": "immutable"})),
                with(attribute("$ref", "reference", false, "The URI of the member"), json!({"mutability": "immutable", "referenceTypes": ["User", "Group"]})),
                with(string("display", "The member's display name"), json!({"mutability": "immutable"})),
                with(string("type", "User or Group"), json!({"mutability": "immutable", "canonicalValues": ["User", "Group"]})),
            ]),
        ],
        "meta": schema_meta(base_url, GROUP_SCHEMA)
    })
}
