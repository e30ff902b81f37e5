//! Ids, versions and etags of the emulated directory: the deterministic hashes (splitmix64,
//! FNV-1a) behind Google-shaped ids, customer ids and etags, the version counter every change
//! bumps, and the ids of new users, groups and external members. Pure: no I/O, no clock.

use super::*;

/// splitmix64's finaliser: a cheap, well-mixed deterministic hash step.
pub fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// FNV-1a over a string, fed through [`mix64`].
pub fn hash_str(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    mix64(hash)
}

pub(super) const B64: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

pub(super) fn b64_of(a: u64, b: u64, len: usize) -> String {
    let mut out = String::with_capacity(len);
    let mut state = a ^ b.rotate_left(17);
    let mut bits = a;
    for i in 0..len {
        if i % 10 == 0 && i > 0 {
            state = mix64(state);
            bits = state;
        }
        out.push(char::from(B64[(bits & 63) as usize]));
        bits >>= 6;
    }
    out
}

pub(super) fn base36(mut value: u64, len: usize) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = vec![b'0'; len];
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(value % 36) as usize];
        value /= 36;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Directory {
    pub(crate) fn next_version(&mut self) -> u64 {
        self.version_counter += 1;
        self.version_counter
    }

    /// The quoted etag of an object at a version: it changes whenever the object does.
    pub fn etag(&self, id: &str, version: u64) -> String {
        let h = mix64(hash_str(id) ^ version.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ self.seed);
        format!("\"{}/{}\"", self.etag_prefix, b64_of(h, mix64(h), 27))
    }

    /// The etag of a member, which depends on the group too.
    pub fn member_etag(&self, group: &str, member: &Member) -> String {
        let h = mix64(hash_str(group) ^ hash_str(&member.id) ^ member.version);
        format!("\"{}/{}\"", self.etag_prefix, b64_of(h, mix64(h), 27))
    }

    pub(crate) fn new_user_id(&mut self) -> Id {
        loop {
            self.id_counter += 1;
            let h = mix64(self.seed.wrapping_mul(0x1000_0001) ^ mix64(self.id_counter));
            let id: Id = format!("1{:020}", h % 10_000_000_000_000_000_000).into();
            if !self.users.contains_key(&id)
                && !self.deleted.contains_key(&id)
                && !self.externals.contains_key(&id)
            {
                return id;
            }
        }
    }

    pub(crate) fn new_group_id(&mut self) -> Id {
        loop {
            self.id_counter += 1;
            let h = mix64(self.seed.wrapping_mul(0x2000_0003) ^ mix64(self.id_counter));
            let prefix = ["00", "01", "02", "03", "04"][(h % 5) as usize];
            let id: Id = format!("{prefix}{}", base36(h / 5, 13)).into();
            if !self.groups.contains_key(&id) {
                return id;
            }
        }
    }

    pub(super) fn external_id_for(&self, email: &str) -> Id {
        let mut attempt = 0u64;
        loop {
            let h = mix64(hash_str(email) ^ attempt);
            let id: Id = format!("1{:020}", h % 10_000_000_000_000_000_000).into();
            if !self.users.contains_key(&id) && !self.deleted.contains_key(&id) {
                return id;
            }
            attempt += 1;
        }
    }
}
