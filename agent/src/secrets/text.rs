//! Vietnamese text in the encodings documents still come in, decoded to
//! Unicode NFC.
//!
//! | encoding | how "MẬT" is stored |
//! |---|---|
//! | `utf-8` (NFC) | `4D E1 BA AC 54` |
//! | `utf-8-nfd` | `4D 41 CC A3 CC 82 54` (and partly composed forms) |
//! | `windows-1258` | `4D C2 F2 54` (base letter, then a combining tone) |
//! | `tcvn3` (ABC, VN3) | `4D CB 54`: uppercase toned letters reuse the lowercase codes (`.VnTimeH` fonts draw them uppercase) |
//! | `vni` | `4D 41 C4 54` (`MAÄT`: base letter, then a modifier byte) |
//! | `viqr` | `MA^.T` |
//! | `viscii` | `4D 87 54` |
//! | `utf-16le` / `utf-16be` | the UTF-16 code units of the NFC or NFD text |
//!
//! A legacy encoding can also be *carried* inside Unicode: a Word file
//! typed in a `.VnTime` or `VNI-Times` font stores each byte as the
//! Windows-1252 character of that byte (`MËT`, `MAÄT`), in UTF-8 XML or in
//! UTF-16. [`Carrier`] says how the bytes of the legacy text travel.
//!
//! The TCVN3 table is TCVN 5712:1993's (VN3 is its subset without the
//! uppercase toned letters; the extra VN1 positions decode as VN1 does);
//! VISCII is RFC 1456's; both were checked against glibc `iconv`.

use unicode_normalization::UnicodeNormalization as _;

/// The encoding a marker was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Encoding {
    Utf8,
    Utf8Nfd,
    Windows1258,
    Tcvn3,
    Vni,
    Viqr,
    Viscii,
    Utf16le,
    Utf16be,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Utf8 => "utf-8",
            Encoding::Utf8Nfd => "utf-8-nfd",
            Encoding::Windows1258 => "windows-1258",
            Encoding::Tcvn3 => "tcvn3",
            Encoding::Vni => "vni",
            Encoding::Viqr => "viqr",
            Encoding::Viscii => "viscii",
            Encoding::Utf16le => "utf-16le",
            Encoding::Utf16be => "utf-16be",
        }
    }

    /// Whether letters of this encoding lose their case (TCVN3 stores
    /// uppercase toned letters with the lowercase codes).
    pub fn caseless(self) -> bool {
        self == Encoding::Tcvn3
    }
}

/// How the bytes of a text travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Carrier {
    /// The bytes themselves.
    Raw,
    /// Each byte as its Windows-1252 character, in UTF-8.
    Utf8,
    /// Each byte as its Windows-1252 character, in UTF-16LE.
    Utf16le,
    /// Each byte as its Windows-1252 character, in UTF-16BE.
    Utf16be,
}

/// Windows-1252 0x80..=0x9F (undefined positions keep their C1 code).
const CP1252_HIGH: [u16; 32] = [
    0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039, 0x0152,
    0x008D, 0x017D, 0x008F, 0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x02DC, 0x2122,
    0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178,
];

/// The Windows-1252 character of a byte.
pub fn cp1252_char(b: u8) -> char {
    let cp =
        if (0x80..0xA0).contains(&b) { u32::from(CP1252_HIGH[usize::from(b - 0x80)]) } else { u32::from(b) };
    char::from_u32(cp).unwrap_or('\u{FFFD}')
}

/// The byte whose Windows-1252 character is `c` (the inverse of
/// [`cp1252_char`]); `None` for other characters.
pub fn cp1252_byte(c: char) -> Option<u8> {
    let cp = c as u32;
    if cp < 0x80 || (0xA0..=0xFF).contains(&cp) {
        return Some(cp as u8);
    }
    CP1252_HIGH.iter().position(|&x| u32::from(x) == cp).map(|i| 0x80 + i as u8)
}

/// TCVN 5712 (VN1 superset of VN3/ABC), bytes 0xA0..=0xFF.
const TCVN_HIGH: [u16; 96] = [
    0x00A0, 0x0102, 0x00C2, 0x00CA, 0x00D4, 0x01A0, 0x01AF, 0x0110, 0x0103, 0x00E2, 0x00EA, 0x00F4, 0x01A1,
    0x01B0, 0x0111, 0x1EB0, 0x0300, 0x0309, 0x0303, 0x0301, 0x0323, 0x00E0, 0x1EA3, 0x00E3, 0x00E1, 0x1EA1,
    0x1EB2, 0x1EB1, 0x1EB3, 0x1EB5, 0x1EAF, 0x1EB4, 0x1EAE, 0x1EA6, 0x1EA8, 0x1EAA, 0x1EA4, 0x1EC0, 0x1EB7,
    0x1EA7, 0x1EA9, 0x1EAB, 0x1EA5, 0x1EAD, 0x00E8, 0x1EC2, 0x1EBB, 0x1EBD, 0x00E9, 0x1EB9, 0x1EC1, 0x1EC3,
    0x1EC5, 0x1EBF, 0x1EC7, 0x00EC, 0x1EC9, 0x1EC4, 0x1EBE, 0x1ED2, 0x0129, 0x00ED, 0x1ECB, 0x00F2, 0x1ED4,
    0x1ECF, 0x00F5, 0x00F3, 0x1ECD, 0x1ED3, 0x1ED5, 0x1ED7, 0x1ED1, 0x1ED9, 0x1EDD, 0x1EDF, 0x1EE1, 0x1EDB,
    0x1EE3, 0x00F9, 0x1ED6, 0x1EE7, 0x0169, 0x00FA, 0x1EE5, 0x1EEB, 0x1EED, 0x1EEF, 0x1EE9, 0x1EF1, 0x1EF3,
    0x1EF7, 0x1EF9, 0x00FD, 0x1EF5, 0x1ED0,
];

/// VISCII (RFC 1456): the six C0 positions it takes, then 0x80..=0xFF.
const VISCII_LOW: [(u8, u16); 6] =
    [(0x02, 0x1EB2), (0x05, 0x1EB4), (0x06, 0x1EAA), (0x14, 0x1EF6), (0x19, 0x1EF8), (0x1E, 0x1EF4)];
const VISCII_HIGH: [u16; 128] = [
    0x1EA0, 0x1EAE, 0x1EB0, 0x1EB6, 0x1EA4, 0x1EA6, 0x1EA8, 0x1EAC, 0x1EBC, 0x1EB8, 0x1EBE, 0x1EC0, 0x1EC2,
    0x1EC4, 0x1EC6, 0x1ED0, 0x1ED2, 0x1ED4, 0x1ED6, 0x1ED8, 0x1EE2, 0x1EDA, 0x1EDC, 0x1EDE, 0x1ECA, 0x1ECE,
    0x1ECC, 0x1EC8, 0x1EE6, 0x0168, 0x1EE4, 0x1EF2, 0x00D5, 0x1EAF, 0x1EB1, 0x1EB7, 0x1EA5, 0x1EA7, 0x1EA9,
    0x1EAD, 0x1EBD, 0x1EB9, 0x1EBF, 0x1EC1, 0x1EC3, 0x1EC5, 0x1EC7, 0x1ED1, 0x1ED3, 0x1ED5, 0x1ED7, 0x1EE0,
    0x01A0, 0x1ED9, 0x1EDD, 0x1EDF, 0x1ECB, 0x1EF0, 0x1EE8, 0x1EEA, 0x1EEC, 0x01A1, 0x1EDB, 0x01AF, 0x00C0,
    0x00C1, 0x00C2, 0x00C3, 0x1EA2, 0x0102, 0x1EB3, 0x1EB5, 0x00C8, 0x00C9, 0x00CA, 0x1EBA, 0x00CC, 0x00CD,
    0x0128, 0x1EF3, 0x0110, 0x1EE9, 0x00D2, 0x00D3, 0x00D4, 0x1EA1, 0x1EF7, 0x1EEB, 0x1EED, 0x00D9, 0x00DA,
    0x1EF9, 0x1EF5, 0x00DD, 0x1EE1, 0x01B0, 0x00E0, 0x00E1, 0x00E2, 0x00E3, 0x1EA3, 0x0103, 0x1EEF, 0x1EAB,
    0x00E8, 0x00E9, 0x00EA, 0x1EBB, 0x00EC, 0x00ED, 0x0129, 0x1EC9, 0x0111, 0x1EF1, 0x00F2, 0x00F3, 0x00F4,
    0x00F5, 0x1ECF, 0x1ECD, 0x1EE5, 0x00F9, 0x00FA, 0x0169, 0x1EE7, 0x00FD, 0x1EE3, 0x1EEE,
];

const GRAVE: char = '\u{300}';
const ACUTE: char = '\u{301}';
const CIRCUMFLEX: char = '\u{302}';
const TILDE: char = '\u{303}';
const BREVE: char = '\u{306}';
const HOOK: char = '\u{309}';
const HORN: char = '\u{31B}';
const DOT: char = '\u{323}';

/// VNI Windows: a modifier byte after its base letter (lowercase and
/// uppercase forms), as combining marks.
fn vni_modifier(b: u8) -> Option<&'static [char]> {
    Some(match b {
        0xF9 | 0xD9 => &[ACUTE],
        0xF8 | 0xD8 => &[GRAVE],
        0xFB | 0xDB => &[HOOK],
        0xF5 | 0xD5 => &[TILDE],
        0xEF | 0xCF => &[DOT],
        0xE2 | 0xC2 => &[CIRCUMFLEX],
        0xE1 | 0xC1 => &[CIRCUMFLEX, ACUTE],
        0xE0 | 0xC0 => &[CIRCUMFLEX, GRAVE],
        0xE5 | 0xC5 => &[CIRCUMFLEX, HOOK],
        0xE3 | 0xC3 => &[CIRCUMFLEX, TILDE],
        0xE4 | 0xC4 => &[CIRCUMFLEX, DOT],
        0xEA | 0xCA => &[BREVE],
        0xE9 | 0xC9 => &[BREVE, ACUTE],
        0xE8 | 0xC8 => &[BREVE, GRAVE],
        0xFA | 0xDA => &[BREVE, HOOK],
        0xFC | 0xDC => &[BREVE, TILDE],
        0xEB | 0xCB => &[BREVE, DOT],
        _ => return None,
    })
}

/// VNI Windows letters that stand alone.
fn vni_letter(b: u8) -> Option<char> {
    Some(match b {
        0xF4 => 'ơ',
        0xD4 => 'Ơ',
        0xF6 => 'ư',
        0xD6 => 'Ư',
        0xF1 => 'đ',
        0xD1 => 'Đ',
        0xED => 'í',
        0xCD => 'Í',
        0xEC => 'ì',
        0xCC => 'Ì',
        0xE6 => 'ỉ',
        0xC6 => 'Ỉ',
        0xF3 => 'ĩ',
        0xD3 => 'Ĩ',
        0xF2 => 'ị',
        0xD2 => 'Ị',
        0xEE => 'ỵ',
        0xCE => 'Ỵ',
        _ => return None,
    })
}

fn is_vni_base(c: char) -> bool {
    matches!(c, 'a' | 'e' | 'o' | 'u' | 'y' | 'A' | 'E' | 'O' | 'U' | 'Y' | 'ơ' | 'Ơ' | 'ư' | 'Ư')
}

fn decode_vni(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    let mut prev_base = false;
    for &b in bytes {
        if prev_base && let Some(marks) = vni_modifier(b) {
            s.extend(marks.iter());
            prev_base = false;
            continue;
        }
        let c = vni_letter(b).unwrap_or_else(|| cp1252_char(b));
        prev_base = is_vni_base(c);
        s.push(c);
    }
    s
}

fn decode_table(bytes: &[u8], enc: Encoding) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        let c = match enc {
            Encoding::Tcvn3 if b >= 0xA0 => char::from_u32(u32::from(TCVN_HIGH[usize::from(b - 0xA0)])),
            Encoding::Tcvn3 => Some(cp1252_char(b)),
            _ if b >= 0x80 => char::from_u32(u32::from(VISCII_HIGH[usize::from(b - 0x80)])),
            _ => VISCII_LOW
                .iter()
                .find(|(k, _)| *k == b)
                .and_then(|(_, v)| char::from_u32(u32::from(*v)))
                .or(Some(char::from(b))),
        };
        s.push(c.unwrap_or('\u{FFFD}'));
    }
    s
}

/// VIQR (RFC 1456): `A^.` is Ậ, `O+'` is Ớ, `DD` is Đ; `\` escapes.
fn decode_viqr(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let chars: Vec<char> = text.chars().collect();
    let mut s = String::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if c == '\\' && i < chars.len() {
            s.push(chars[i]);
            i += 1;
            continue;
        }
        if (c == 'D' || c == 'd') && chars.get(i).is_some_and(|n| *n == 'D' || *n == 'd') {
            s.push(if c == 'D' { 'Đ' } else { 'đ' });
            i += 1;
            continue;
        }
        s.push(c);
        let lower = c.to_ascii_lowercase();
        if !matches!(lower, 'a' | 'e' | 'i' | 'o' | 'u' | 'y') {
            continue;
        }
        match (lower, chars.get(i)) {
            ('a' | 'e' | 'o', Some('^')) => {
                s.push(CIRCUMFLEX);
                i += 1;
            }
            ('a', Some('(')) => {
                s.push(BREVE);
                i += 1;
            }
            ('o' | 'u', Some('+')) => {
                s.push(HORN);
                i += 1;
            }
            _ => {}
        }
        let tone = match chars.get(i) {
            Some('\'') => Some(ACUTE),
            Some('`') => Some(GRAVE),
            Some('?') => Some(HOOK),
            Some('~') => Some(TILDE),
            Some('.') => Some(DOT),
            _ => None,
        };
        if let Some(t) = tone {
            s.push(t);
            i += 1;
        }
    }
    s
}

fn utf16(bytes: &[u8], big_endian: bool) -> String {
    let units = bytes.chunks_exact(2).map(|p| {
        if big_endian { u16::from_be_bytes([p[0], p[1]]) } else { u16::from_le_bytes([p[0], p[1]]) }
    });
    char::decode_utf16(units).map(|r| r.unwrap_or('\u{FFFD}')).collect()
}

/// The text a carried legacy run travels as.
fn uncarry(bytes: &[u8], carrier: Carrier) -> String {
    match carrier {
        Carrier::Raw | Carrier::Utf8 => String::from_utf8_lossy(bytes).into_owned(),
        Carrier::Utf16le => utf16(bytes, false),
        Carrier::Utf16be => utf16(bytes, true),
    }
}

/// Decodes `bytes` (travelling as `carrier`) from `enc` to NFC text.
/// Carried legacy runs are decoded run by run: characters outside
/// Windows-1252 (real Unicode text around them) pass unchanged.
pub fn decode(bytes: &[u8], enc: Encoding, carrier: Carrier) -> String {
    if carrier != Carrier::Raw {
        let text = uncarry(bytes, carrier);
        let mut out = String::with_capacity(text.len());
        let mut run = Vec::new();
        for c in text.chars() {
            match cp1252_byte(c) {
                Some(b) => run.push(b),
                None => {
                    out.push_str(&decode_raw(&run, enc));
                    run.clear();
                    out.push(c);
                }
            }
        }
        out.push_str(&decode_raw(&run, enc));
        return out.nfc().collect();
    }
    decode_raw(bytes, enc).nfc().collect()
}

fn decode_raw(bytes: &[u8], enc: Encoding) -> String {
    match enc {
        Encoding::Utf8 | Encoding::Utf8Nfd => String::from_utf8_lossy(bytes).into_owned(),
        Encoding::Utf16le => utf16(bytes, false),
        Encoding::Utf16be => utf16(bytes, true),
        Encoding::Windows1258 => encoding_rs::WINDOWS_1258.decode_without_bom_handling(bytes).0.into_owned(),
        Encoding::Tcvn3 | Encoding::Viscii => decode_table(bytes, enc),
        Encoding::Vni => decode_vni(bytes),
        Encoding::Viqr => decode_viqr(bytes),
    }
}

/// Encodes NFC text into a legacy encoding (used by tests and the
/// prefilter's pattern list); characters it cannot hold become `?`.
pub fn encode(text: &str, enc: Encoding) -> Vec<u8> {
    let mut out = Vec::new();
    match enc {
        Encoding::Utf8 => out.extend_from_slice(text.nfc().collect::<String>().as_bytes()),
        Encoding::Utf8Nfd => out.extend_from_slice(text.nfd().collect::<String>().as_bytes()),
        Encoding::Utf16le => {
            text.nfc().collect::<String>().encode_utf16().for_each(|u| out.extend(u.to_le_bytes()))
        }
        Encoding::Utf16be => {
            text.nfc().collect::<String>().encode_utf16().for_each(|u| out.extend(u.to_be_bytes()))
        }
        Encoding::Windows1258 => {
            // Windows-1258 holds base letters with their vowel marks and
            // the five tones as combining characters
            for c in text.nfc() {
                let mut buf = [0u8; 4];
                let (bytes, _, bad) = encoding_rs::WINDOWS_1258.encode(c.encode_utf8(&mut buf));
                if !bad {
                    out.extend_from_slice(&bytes);
                    continue;
                }
                let mut parts: Vec<char> = std::iter::once(c).nfd().collect();
                let tone = parts.iter().position(|m| matches!(*m, GRAVE | ACUTE | TILDE | HOOK | DOT));
                let tone = tone.map(|i| parts.remove(i));
                let base: String = parts.into_iter().nfc().collect();
                let (b, _, bad) = encoding_rs::WINDOWS_1258.encode(&base);
                out.extend_from_slice(if bad { b"?" } else { &b });
                if let Some(t) = tone {
                    let (b, _, _) = encoding_rs::WINDOWS_1258.encode(t.encode_utf8(&mut buf));
                    out.extend_from_slice(&b);
                }
            }
        }
        Encoding::Tcvn3 | Encoding::Viscii | Encoding::Vni | Encoding::Viqr => {
            for c in text.nfc() {
                encode_char(c, enc, &mut out);
            }
        }
    }
    out
}

fn encode_char(c: char, enc: Encoding, out: &mut Vec<u8>) {
    if c.is_ascii() {
        out.push(c as u8);
        return;
    }
    match enc {
        Encoding::Tcvn3 => {
            // VN3: an uppercase toned letter takes its lowercase code
            let find =
                |c: char| TCVN_HIGH.iter().position(|&u| u32::from(u) == c as u32).map(|i| 0xA0 + i as u8);
            let lower = c.to_lowercase().next().unwrap_or(c);
            let vn3_upper = matches!(c, 'Ă' | 'Â' | 'Ê' | 'Ô' | 'Ơ' | 'Ư' | 'Đ');
            let b = if vn3_upper { find(c) } else { find(lower) };
            out.push(b.unwrap_or(b'?'));
        }
        Encoding::Viscii => {
            let b = VISCII_HIGH
                .iter()
                .position(|&u| u32::from(u) == c as u32)
                .map(|i| 0x80 + i as u8)
                .or_else(|| VISCII_LOW.iter().find(|(_, u)| u32::from(*u) == c as u32).map(|(k, _)| *k));
            out.push(b.unwrap_or(b'?'));
        }
        Encoding::Vni => {
            if let Some(b) = (0x80u8..=0xFF).find(|&b| vni_letter(b) == Some(c)) {
                out.push(b);
                return;
            }
            let parts: Vec<char> = std::iter::once(c).nfd().collect();
            let Some((&base, marks)) = parts.split_first() else { return };
            let (base, marks) = match (base, marks) {
                ('o', [HORN, rest @ ..]) => ('ơ', rest),
                ('O', [HORN, rest @ ..]) => ('Ơ', rest),
                ('u', [HORN, rest @ ..]) => ('ư', rest),
                ('U', [HORN, rest @ ..]) => ('Ư', rest),
                (b, m) => (b, m),
            };
            let mut marks: Vec<char> = marks.to_vec();
            // VNI names the vowel mark first, then the tone
            marks.sort_by_key(|m| !matches!(*m, CIRCUMFLEX | BREVE));
            encode_char(base, enc, out);
            if marks.is_empty() {
                return;
            }
            let upper = base.is_uppercase();
            let b = (0x80u8..=0xFF)
                .find(|&b| vni_modifier(b).is_some_and(|m| m == marks.as_slice()) && ((b < 0xE0) == upper));
            out.push(b.unwrap_or(b'?'));
        }
        Encoding::Viqr => {
            let mut parts: Vec<char> = std::iter::once(c).nfd().collect();
            // VIQR names the vowel mark first, then the tone
            if parts.len() > 2 {
                parts[1..].sort_by_key(|m| !matches!(*m, CIRCUMFLEX | BREVE | HORN));
            }
            for p in parts {
                match p {
                    'Đ' => out.extend_from_slice(b"DD"),
                    'đ' => out.extend_from_slice(b"dd"),
                    CIRCUMFLEX => out.push(b'^'),
                    BREVE => out.push(b'('),
                    HORN => out.push(b'+'),
                    ACUTE => out.push(b'\''),
                    GRAVE => out.push(b'`'),
                    HOOK => out.push(b'?'),
                    TILDE => out.push(b'~'),
                    DOT => out.push(b'.'),
                    p if p.is_ascii() => out.push(p as u8),
                    _ => out.push(b'?'),
                }
            }
        }
        _ => out.push(b'?'),
    }
}

/// Carries legacy bytes the way Word stores a legacy-font run.
pub fn carry(bytes: &[u8], carrier: Carrier) -> Vec<u8> {
    let text: String = bytes.iter().map(|&b| cp1252_char(b)).collect();
    match carrier {
        Carrier::Raw => bytes.to_vec(),
        Carrier::Utf8 => text.into_bytes(),
        Carrier::Utf16le => text.encode_utf16().flat_map(|u| u.to_le_bytes()).collect(),
        Carrier::Utf16be => text.encode_utf16().flat_map(|u| u.to_be_bytes()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_mission_byte_patterns() {
        assert_eq!(encode("MẬT", Encoding::Tcvn3), b"M\xCBT");
        assert_eq!(encode("MẬT", Encoding::Vni), b"MA\xC4T");
        assert_eq!(encode("TUYỆT MẬT", Encoding::Vni), b"TUYE\xC4T MA\xC4T");
        assert_eq!(encode("MẬT", Encoding::Viqr), b"MA^.T");
        assert_eq!(encode("MẬT", Encoding::Windows1258), b"M\xC2\xF2T");
        assert_eq!(encode("MẬT", Encoding::Viscii), b"M\x87T");
        assert_eq!(encode("MẬT", Encoding::Utf8Nfd), b"MA\xCC\xA3\xCC\x82T");
    }

    #[test]
    fn secrets_round_trip_every_encoding() {
        let text =
            "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM Độc lập - Tự do - Hạnh phúc TUYỆT MẬT TỐI MẬT đường ưu ơn";
        for enc in [
            Encoding::Utf8,
            Encoding::Utf8Nfd,
            Encoding::Windows1258,
            Encoding::Vni,
            Encoding::Viqr,
            Encoding::Viscii,
            Encoding::Utf16le,
            Encoding::Utf16be,
        ] {
            let bytes = encode(text, enc);
            assert_eq!(decode(&bytes, enc, Carrier::Raw), text, "{}", enc.name());
        }
        // TCVN3 loses the case of toned letters only
        let bytes = encode(text, Encoding::Tcvn3);
        let back = decode(&bytes, Encoding::Tcvn3, Carrier::Raw);
        assert_eq!(back.to_uppercase(), text.to_uppercase());
        assert!(back.starts_with("Cộ"), "{back}");
    }

    #[test]
    fn secrets_carried_legacy_runs() {
        let legacy = encode("TỐI MẬT", Encoding::Vni);
        for carrier in [Carrier::Utf8, Carrier::Utf16le, Carrier::Utf16be] {
            let carried = carry(&legacy, carrier);
            assert_eq!(decode(&carried, Encoding::Vni, carrier), "TỐI MẬT");
        }
        assert_eq!(carry(b"M\xCBT", Carrier::Utf8), "MËT".as_bytes());
    }
}
