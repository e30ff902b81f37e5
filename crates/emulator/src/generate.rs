//! Deterministic generated organisations: the same size and seed always give the same
//! directory. Realistic on purpose — an org unit tree, managers, suspended and archived users,
//! aliases, custom schemas, external ids, nested groups, external and CUSTOMER members, and
//! group sizes with a long tail (Zipf-like) — and fast enough for 100k users, 10k groups and
//! 1M memberships in seconds.

use std::collections::{HashMap, HashSet};

use chrono::DateTime;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

use super::directory::{timestamp, Directory, Id, MemberType, Role, NEVER};

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateSpec {
    pub users: usize,
    pub groups: usize,
    /// Direct user memberships in total; `None`: [`default_members`].
    pub members: Option<usize>,
    pub seed: u64,
    pub domain: String,
    pub customer_id: String,
}

/// The default number of direct user memberships: about 100 per group on average, but at
/// most a quarter of the users per group on average (so small orgs stay plausible).
pub fn default_members(users: usize, groups: usize) -> usize {
    groups * 100.min(users.div_ceil(4).max(1))
}

const GIVEN: &[&str] = &[
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Christopher",
    "Lisa",
    "Daniel",
    "Nancy",
    "Matthew",
    "Betty",
    "Anthony",
    "Sandra",
    "Mark",
    "Margaret",
    "Donald",
    "Ashley",
    "Steven",
    "Kimberly",
    "Andrew",
    "Emily",
    "Paul",
    "Donna",
    "Joshua",
    "Michelle",
    "Kenneth",
    "Carol",
    "Kevin",
    "Amanda",
    "Brian",
    "Melissa",
    "George",
    "Deborah",
    "Timothy",
    "Stephanie",
    "Ronald",
    "Rebecca",
    "Jason",
    "Sharon",
    "Edward",
    "Laura",
    "Jeffrey",
    "Cynthia",
    "Ryan",
    "Amy",
    "Jacob",
    "Kathleen",
    "Gary",
    "Angela",
    "Nicholas",
    "Shirley",
    "Eric",
    "Brenda",
    "Jonathan",
    "Emma",
    "Stephen",
    "Anna",
    "Larry",
    "Pamela",
    "Justin",
    "Nicole",
    "Scott",
    "Samantha",
    "Brandon",
    "Katherine",
    "Aisha",
    "Wei",
    "Priya",
    "Mateo",
    "Sofia",
    "Hiroshi",
    "Yuki",
    "Olga",
    "Ivan",
    "Fatima",
    "Omar",
    "Chloé",
    "Lars",
    "Ingrid",
    "Kwame",
    "Amara",
    "Diego",
    "Lucía",
    "Noah",
    "Zoë",
];

const FAMILY: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
    "Chen",
    "Wang",
    "Kim",
    "Patel",
    "Singh",
    "Müller",
    "Schmidt",
    "Rossi",
    "Dubois",
    "Novak",
    "Kowalski",
    "Tanaka",
    "Sato",
    "Okafor",
    "Mensah",
    "Haddad",
    "Cohen",
    "Silva",
    "Santos",
    "Ivanova",
    "Andersson",
    "O'Brien",
    "Murphy",
    "Byrne",
    "Kelly",
    "Fischer",
    "Weber",
    "Larsen",
    "Nielsen",
    "Yilmaz",
];

/// (org unit, share of users in per mille, titles).
const UNITS: &[(&str, u32, &[&str])] = &[
    (
        "/Engineering/Platform",
        90,
        &[
            "Software Engineer",
            "Senior Software Engineer",
            "Staff Engineer",
            "Engineering Manager",
        ],
    ),
    (
        "/Engineering/Backend",
        90,
        &["Software Engineer", "Senior Software Engineer", "Tech Lead"],
    ),
    (
        "/Engineering/Frontend",
        70,
        &["Frontend Engineer", "Senior Frontend Engineer", "Designer"],
    ),
    (
        "/Engineering/Data",
        60,
        &["Data Engineer", "Data Scientist", "Analytics Lead"],
    ),
    ("/Engineering/Security", 30, &["Security Engineer", "CISO"]),
    (
        "/Sales/EMEA",
        70,
        &["Account Executive", "Sales Engineer", "Regional Director"],
    ),
    (
        "/Sales/Americas",
        80,
        &["Account Executive", "SDR", "VP Sales"],
    ),
    ("/Sales/APAC", 50, &["Account Executive", "Partner Manager"]),
    (
        "/Marketing",
        80,
        &["Marketing Manager", "Content Writer", "Growth Lead"],
    ),
    ("/Finance", 60, &["Accountant", "Controller", "CFO"]),
    (
        "/People",
        50,
        &["Recruiter", "HR Business Partner", "People Ops"],
    ),
    ("/Support/Tier1", 90, &["Support Specialist"]),
    (
        "/Support/Tier2",
        50,
        &["Support Engineer", "Support Manager"],
    ),
    (
        "/Operations",
        60,
        &["Operations Manager", "Office Manager", "IT Admin"],
    ),
    ("/Legal", 20, &["Counsel", "Paralegal"]),
    ("/Contractors", 50, &["Contractor"]),
];

const PROJECTS: &[&str] = &[
    "atlas", "zephyr", "orion", "nimbus", "apollo", "hermes", "polaris", "quartz", "vega", "lumen",
    "ember", "tundra", "cobalt", "helix", "pioneer",
];

const TEAM_WORDS: &[&str] = &[
    "team",
    "project",
    "guild",
    "oncall",
    "announce",
    "social",
    "leads",
    "reviewers",
    "interest",
    "committee",
    "launch",
    "ops",
    "triage",
    "book-club",
    "running",
];

const PARTNERS: &[&str] = &[
    "partner-one.example.net",
    "contoso.example.org",
    "fabrikam.example.net",
    "northwind.example.org",
    "vendor.example.net",
];

fn slug(text: &str) -> String {
    text.chars()
        .filter_map(|c| match c {
            'ü' => Some('u'),
            'é' => Some('e'),
            'ë' => Some('e'),
            'í' => Some('i'),
            c if c.is_ascii_alphanumeric() => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// Builds the organisation described by `spec`.
pub fn generate(spec: &GenerateSpec) -> Directory {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let mut dir = Directory::new(&spec.customer_id, &spec.domain, spec.seed);
    let domain = dir.domain.clone();
    for (path, _, _) in UNITS {
        // Paths in UNITS are valid constants.
        let _ = dir.add_org_unit(path, "");
    }
    let _ = dir.add_org_unit("/Archived", "Users kept for records");

    let total_weight: u32 = UNITS.iter().map(|u| u.1).sum();
    let creation_base = 1_420_070_400_i64; // 2015-01-01
    let login_base = 1_788_220_800_i64; // 2026-09-01
    let mut taken: HashMap<String, u32> = HashMap::new();
    let mut unit_members: Vec<Vec<String>> = vec![Vec::new(); UNITS.len()];
    let mut user_ids: Vec<Id> = Vec::with_capacity(spec.users);

    for index in 0..spec.users {
        let (given, family, unit) = if index == 0 {
            ("Ada", "Admin", None)
        } else {
            let mut roll = rng.random_range(0..total_weight);
            let mut unit = 0;
            for (i, (_, weight, _)) in UNITS.iter().enumerate() {
                if roll < *weight {
                    unit = i;
                    break;
                }
                roll -= weight;
            }
            (*pick(&mut rng, GIVEN), *pick(&mut rng, FAMILY), Some(unit))
        };
        let email = if index == 0 {
            format!("admin@{domain}")
        } else {
            let base = format!("{}.{}", slug(given), slug(family));
            let count = taken.entry(base.clone()).or_insert(0);
            *count += 1;
            if *count == 1 {
                format!("{base}@{domain}")
            } else {
                format!("{base}{count}@{domain}")
            }
        };
        let suspended = index != 0 && rng.random_bool(0.03);
        let archived = index != 0 && !suspended && rng.random_bool(0.01);
        let created = creation_base + rng.random_range(0..(11 * 365 * 86_400));
        let never = index != 0 && rng.random_bool(0.08);
        let last_login = if never {
            NEVER.to_owned()
        } else {
            let at = login_base + rng.random_range(0..(87 * 86_400));
            DateTime::from_timestamp(at, 0).map_or_else(|| NEVER.to_owned(), timestamp)
        };
        let ou = match unit {
            None => "/".to_owned(),
            Some(_) if archived => "/Archived".to_owned(),
            Some(unit) => UNITS[unit].0.to_owned(),
        };
        let department = ou.rsplit('/').next().unwrap_or("").to_owned();
        let title = unit.map_or("Workspace Administrator", |u| *pick(&mut rng, UNITS[u].2));
        let cost_center = format!(
            "CC-{}",
            100 + unit.unwrap_or(0) * 10 + rng.random_range(0..3)
        );
        let employee_id = format!("E{:06}", index + 1);
        let enrolled = rng.random_bool(0.7);

        let mut body = Map::new();
        body.insert("primaryEmail".into(), json!(email));
        body.insert(
            "name".into(),
            json!({"givenName": given, "familyName": family, "fullName": format!("{given} {family}")}),
        );
        body.insert("isAdmin".into(), json!(index == 0));
        body.insert(
            "isDelegatedAdmin".into(),
            json!(index != 0 && rng.random_bool(0.005)),
        );
        body.insert("lastLoginTime".into(), json!(last_login));
        body.insert(
            "creationTime".into(),
            json!(DateTime::from_timestamp(created, 0).map_or_else(|| NEVER.to_owned(), timestamp)),
        );
        body.insert("agreedToTerms".into(), json!(!never));
        body.insert("suspended".into(), json!(suspended));
        if suspended {
            body.insert("suspensionReason".into(), json!("ADMIN"));
        }
        body.insert("archived".into(), json!(archived));
        body.insert("changePasswordAtNextLogin".into(), json!(never));
        body.insert("ipWhitelisted".into(), json!(false));
        if index != 0 && rng.random_bool(0.08) {
            let alias = format!(
                "{}{}@{domain}",
                slug(given).chars().next().unwrap_or('x'),
                slug(family)
            );
            if !taken.contains_key(&alias) {
                taken.insert(alias.clone(), 1);
                body.insert("aliases".into(), json!([alias]));
            }
        }
        body.insert(
            "nonEditableAliases".into(),
            json!([format!("{email}.test-google-a.com")]),
        );
        body.insert("customerId".into(), json!(spec.customer_id));
        body.insert("orgUnitPath".into(), json!(ou));
        body.insert("isMailboxSetup".into(), json!(!never));
        body.insert("isEnrolledIn2Sv".into(), json!(enrolled));
        body.insert(
            "isEnforcedIn2Sv".into(),
            json!(enrolled && rng.random_bool(0.5)),
        );
        body.insert("includeInGlobalAddressList".into(), json!(true));
        body.insert(
            "organizations".into(),
            json!([{"title": title, "primary": true, "customType": "", "department": department, "costCenter": cost_center}]),
        );
        if let Some(unit) = unit {
            let peers = &unit_members[unit];
            if !peers.is_empty() {
                // Managers come from the first members of the unit: a shallow hierarchy.
                let manager = &peers[rng.random_range(0..peers.len().min(1 + peers.len() / 8))];
                body.insert(
                    "relations".into(),
                    json!([{"value": manager, "type": "manager"}]),
                );
            }
        }
        body.insert(
            "externalIds".into(),
            json!([{"value": employee_id, "type": "organization"}]),
        );
        if rng.random_bool(0.5) {
            body.insert(
                "phones".into(),
                json!([{"value": format!("+1650555{:04}", index % 10_000), "type": "work"}]),
            );
        }
        let mut hr = json!({"EmployeeId": employee_id, "CostCenter": cost_center});
        if rng.random_bool(0.2) {
            hr["Projects"] =
                json!([{"value": pick(&mut rng, PROJECTS)}, {"value": pick(&mut rng, PROJECTS)}]);
        }
        body.insert("customSchemas".into(), json!({ "HR": hr }));
        if rng.random_bool(0.3) {
            let tag = dir.etag(&email, 1);
            body.insert(
                "thumbnailPhotoUrl".into(),
                json!(format!(
                    "https://lh3.googleusercontent.com/a-/emu{index}=s96-c"
                )),
            );
            body.insert("thumbnailPhotoEtag".into(), json!(tag));
        }
        let id = dir.add_user_body(None, body);
        if let Some(unit) = unit {
            unit_members[unit].push(email);
        }
        user_ids.push(id);
    }

    let group_ids = generate_groups(&mut dir, &mut rng, spec);
    generate_members(&mut dir, &mut rng, spec, &user_ids, &group_ids);
    dir
}

fn generate_groups(dir: &mut Directory, rng: &mut StdRng, spec: &GenerateSpec) -> Vec<Id> {
    let domain = dir.domain.clone();
    let mut ids = Vec::with_capacity(spec.groups);
    let mut used: HashSet<String> = HashSet::new();
    for index in 0..spec.groups {
        let (local, name) = match index {
            0 => ("all-staff".to_owned(), "All staff".to_owned()),
            i if i <= UNITS.len() => {
                let path = UNITS[i - 1].0;
                let local = path
                    .trim_start_matches('/')
                    .replace('/', "-")
                    .to_lowercase();
                (local, path.trim_start_matches('/').replace('/', " "))
            }
            i => {
                let word = pick(rng, TEAM_WORDS);
                let project = pick(rng, PROJECTS);
                (
                    format!("{project}-{word}-{i}"),
                    format!("{project} {word} {i}"),
                )
            }
        };
        let local = if used.insert(local.clone()) {
            local
        } else {
            format!("{local}-{index}")
        };
        let email = format!("{local}@{domain}");
        let mut body = Map::new();
        body.insert("email".into(), json!(email));
        body.insert("name".into(), json!(name));
        let description = if rng.random_bool(0.3) {
            String::new()
        } else {
            format!("Members of {name}")
        };
        body.insert("description".into(), json!(description));
        body.insert("adminCreated".into(), json!(rng.random_bool(0.95)));
        if index > 0 && rng.random_bool(0.05) {
            let alias = format!("{local}-alias@{domain}");
            if used.insert(alias.clone()) {
                body.insert("aliases".into(), json!([alias]));
            }
        }
        body.insert(
            "nonEditableAliases".into(),
            json!([format!("{email}.test-google-a.com")]),
        );
        ids.push(dir.add_group_body(None, body));
    }
    ids
}

/// Group sizes ∝ 1/(rank+1)^0.9, capped at the number of users, summing to `total`.
fn group_sizes(groups: usize, users: usize, total: usize) -> Vec<usize> {
    if groups == 0 || users == 0 {
        return vec![0; groups];
    }
    let weights: Vec<f64> = (0..groups)
        .map(|rank| 1.0 / ((rank + 1) as f64).powf(0.9))
        .collect();
    let sum: f64 = weights.iter().sum();
    let total = total.min(groups * users);
    let mut sizes: Vec<usize> = weights
        .iter()
        .map(|w| ((total as f64 * w / sum) as usize).clamp(1, users))
        .collect();
    let mut assigned: usize = sizes.iter().sum();
    // Spread what the caps and rounding lost over the groups that have room, smallest first.
    let mut index = groups;
    let mut stalled = 0;
    while assigned < total && stalled < groups {
        index = if index == 0 { groups - 1 } else { index - 1 };
        if sizes[index] < users {
            let add = (total - assigned)
                .min(users - sizes[index])
                .min(1 + (total - assigned) / groups);
            sizes[index] += add;
            assigned += add;
            stalled = 0;
        } else {
            stalled += 1;
        }
    }
    sizes
}

fn generate_members(
    dir: &mut Directory,
    rng: &mut StdRng,
    spec: &GenerateSpec,
    users: &[Id],
    groups: &[Id],
) {
    let total = spec
        .members
        .unwrap_or_else(|| default_members(spec.users, spec.groups));
    let sizes = group_sizes(groups.len(), users.len(), total);
    let mut chosen: HashSet<usize> = HashSet::new();
    for (index, (group, size)) in groups.iter().zip(sizes).enumerate() {
        chosen.clear();
        // Floyd's sampling: `size` distinct users in O(size).
        let n = users.len();
        for j in (n - size)..n {
            let t = rng.random_range(0..=j);
            if !chosen.insert(t) {
                chosen.insert(j);
            }
        }
        let mut picked: Vec<usize> = chosen.iter().copied().collect();
        picked.sort_unstable();
        for (k, user) in picked.into_iter().enumerate() {
            let role = if k == 0 {
                Role::Owner
            } else if rng.random_bool(0.03) {
                Role::Manager
            } else {
                Role::Member
            };
            let delivery = if rng.random_bool(0.9) {
                0
            } else {
                rng.random_range(1..5)
            };
            dir.add_member_raw(group, users[user].clone(), MemberType::User, role, delivery);
        }
        if index == 0 {
            let customer = Id::from(spec.customer_id.as_str());
            dir.add_member_raw(group, customer, MemberType::Customer, Role::Member, 0);
        }
        if index > 0 && rng.random_bool(0.15) {
            for _ in 0..rng.random_range(1..=3) {
                let given = *pick::<&str>(rng, GIVEN);
                let family = *pick::<&str>(rng, FAMILY);
                let partner = *pick::<&str>(rng, PARTNERS);
                let email = format!("{}.{}@{partner}", slug(given), slug(family));
                let id = dir.external(&email);
                dir.add_member_raw(group, id, MemberType::External, Role::Member, 0);
            }
        }
        // Nested groups point only at later groups, so the graph stays acyclic.
        if index > 0 && index + 1 < groups.len() && rng.random_bool(0.08) {
            for _ in 0..rng.random_range(1..=2) {
                let child = rng.random_range(index + 1..groups.len());
                dir.add_member_raw(
                    group,
                    groups[child].clone(),
                    MemberType::Group,
                    Role::Member,
                    0,
                );
            }
        }
    }
}

/// Applies `--admin` subjects: existing users become admins, new addresses become admin users.
pub fn ensure_admins(dir: &mut Directory, admins: &[String]) -> Result<(), String> {
    for admin in admins {
        if dir.resolve_user(admin).is_some() {
            dir.set_admin(admin, true).map_err(|e| e.to_string())?;
            continue;
        }
        let local = admin.split('@').next().unwrap_or("admin");
        let input: Value = json!({
            "primaryEmail": admin,
            "name": {"givenName": local, "familyName": "Admin"},
        });
        dir.insert_user(&input, chrono::Utc::now())
            .map_err(|err| format!("--admin {admin}: {}", err.message))?;
        dir.set_admin(admin, true).map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec(users: usize, groups: usize, seed: u64) -> GenerateSpec {
        GenerateSpec {
            users,
            groups,
            members: None,
            seed,
            domain: "example.com".into(),
            customer_id: "C0abc1234".into(),
        }
    }

    #[test]
    fn deterministic_and_realistic() {
        let a = generate(&spec(300, 30, 9));
        let b = generate(&spec(300, 30, 9));
        let c = generate(&spec(300, 30, 10));
        let ids = |d: &Directory| d.users.keys().cloned().collect::<Vec<_>>();
        assert_eq!(ids(&a), ids(&b));
        assert_ne!(ids(&a), ids(&c));
        let stats = a.stats();
        assert_eq!(stats.users, 300);
        assert_eq!(stats.groups, 30);
        assert!(stats.memberships >= 30 * 75);
        assert!(stats.suspended_users > 0);
        assert!(a.is_admin("admin@example.com"));
        let sizes: Vec<usize> = a.groups.values().map(|g| g.direct_users).collect();
        assert!(sizes.iter().max() > Some(&(3 * sizes.iter().sum::<usize>() / sizes.len())));
    }

    #[test]
    fn sizes_hit_the_total() {
        let sizes = group_sizes(10_000, 100_000, 1_000_000);
        let sum: usize = sizes.iter().sum();
        assert_eq!(sum, 1_000_000);
        assert!(sizes.iter().all(|&s| (1..=100_000).contains(&s)));
        assert_eq!(group_sizes(3, 2, 100), vec![2, 2, 2]);
    }
}
