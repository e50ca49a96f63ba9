//! The few pieces of the chat command protocol the stress client speaks (see the protocol spec):
//! building `name(fields)` commands and reading fields of the server's replies.

use std::fmt::Write;

/// Appends a protocol string field: byte length, `,`, the bytes.
pub fn put_str(out: &mut String, s: &str) {
    let _ = write!(out, "{},{s}", s.len());
}

/// `addchatroom(M,name,"","",server_password)`: a persistent room when the password is right.
pub fn addchatroom(m: u64, name: &str, password: &str) -> String {
    let mut s = format!("addchatroom({m},");
    put_str(&mut s, name);
    s.push_str("0,0,");
    put_str(&mut s, password);
    s.push(')');
    s
}

/// `adduser(M,U,username,password,server_password)`.
pub fn adduser(m: u64, uid: u64, name: &str, pass: &str, password: &str) -> String {
    let mut s = format!("adduser({m},{uid},");
    put_str(&mut s, name);
    put_str(&mut s, pass);
    put_str(&mut s, password);
    s.push(')');
    s
}

/// `login(M,username,password)`.
pub fn login(m: u64, name: &str, pass: &str) -> String {
    let mut s = format!("login({m},");
    put_str(&mut s, name);
    put_str(&mut s, pass);
    s.push(')');
    s
}

/// `joinchatroom(M,R,0,"")`: join without leaving other rooms, no answer.
pub fn joinchatroom(m: u64, room: u64) -> String {
    format!("joinchatroom({m},{room},0,0,)")
}

/// Reads the fields of a server message after its `name(` prefix.
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    /// The fields of `msg` if it starts with `prefix` (for example `b"chatroomcreated("`).
    pub fn after(msg: &'a [u8], prefix: &[u8]) -> Option<Self> {
        msg.starts_with(prefix).then_some(Fields {
            buf: msg,
            pos: prefix.len(),
        })
    }

    /// A number field ended by `,` (or by the closing `)`).
    pub fn num(&mut self) -> Option<u64> {
        let start = self.pos;
        let mut v: u64 = 0;
        while let Some(&b) = self.buf.get(self.pos) {
            match b {
                b'0'..=b'9' => v = v.checked_mul(10)?.checked_add((b - b'0') as u64)?,
                b',' | b')' => break,
                _ => return None,
            }
            self.pos += 1;
        }
        if self.pos == start || self.pos == self.buf.len() {
            return None;
        }
        if self.buf[self.pos] == b',' {
            self.pos += 1;
        }
        Some(v)
    }

    /// A string field: length, `,`, that many bytes.
    pub fn str(&mut self) -> Option<&'a [u8]> {
        let n = self.num()? as usize;
        let s = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_commands_as_in_the_spec_examples() {
        assert_eq!(addchatroom(1, "lobby", ""), "addchatroom(1,5,lobby0,0,0,)");
        assert_eq!(
            adduser(3, 42, "alice", "secret", "pw"),
            "adduser(3,42,5,alice6,secret2,pw)"
        );
        assert_eq!(login(4, "alice", "secret"), "login(4,5,alice6,secret)");
        assert_eq!(joinchatroom(7, 1), "joinchatroom(7,1,0,0,)");
    }

    #[test]
    fn reads_reply_fields() {
        let mut f =
            Fields::after(b"chatroomcreated(1,3,5,lo,b)9,1,)", b"chatroomcreated(").unwrap();
        assert_eq!(f.num(), Some(1));
        assert_eq!(f.num(), Some(3));
        assert_eq!(f.str(), Some(&b"lo,b)"[..]));
        assert_eq!(f.num(), Some(9));
        assert_eq!(f.num(), Some(1));
        assert_eq!(f.num(), None);
        assert!(Fields::after(b"chat(1,", b"chatroomcreated(").is_none());
        let mut g = Fields::after(b"yourchatclientid(17,)", b"yourchatclientid(").unwrap();
        assert_eq!(g.num(), Some(17));
        let mut h = Fields::after(b"x(5,ab)", b"x(").unwrap();
        assert_eq!(h.str(), None);
    }
}
