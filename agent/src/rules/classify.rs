//! `classification.config`: classtype → (description, priority).

use std::collections::HashMap;

/// Suricata's default `classification.config` (data, as shipped in
/// suricata/etc/classification.config).
const BUILTIN: &str = "\
config classification: not-suspicious,Not Suspicious Traffic,3
config classification: unknown,Unknown Traffic,3
config classification: bad-unknown,Potentially Bad Traffic, 2
config classification: attempted-recon,Attempted Information Leak,2
config classification: successful-recon-limited,Information Leak,2
config classification: successful-recon-largescale,Large Scale Information Leak,2
config classification: attempted-dos,Attempted Denial of Service,2
config classification: successful-dos,Denial of Service,2
config classification: attempted-user,Attempted User Privilege Gain,1
config classification: unsuccessful-user,Unsuccessful User Privilege Gain,1
config classification: successful-user,Successful User Privilege Gain,1
config classification: attempted-admin,Attempted Administrator Privilege Gain,1
config classification: successful-admin,Successful Administrator Privilege Gain,1
config classification: rpc-portmap-decode,Decode of an RPC Query,2
config classification: shellcode-detect,Executable code was detected,1
config classification: string-detect,A suspicious string was detected,3
config classification: suspicious-filename-detect,A suspicious filename was detected,2
config classification: suspicious-login,An attempted login using a suspicious username was detected,2
config classification: system-call-detect,A system call was detected,2
config classification: tcp-connection,A TCP connection was detected,4
config classification: trojan-activity,A Network Trojan was detected, 1
config classification: unusual-client-port-connection,A client was using an unusual port,2
config classification: network-scan,Detection of a Network Scan,3
config classification: denial-of-service,Detection of a Denial of Service Attack,2
config classification: non-standard-protocol,Detection of a non-standard protocol or event,2
config classification: protocol-command-decode,Generic Protocol Command Decode,3
config classification: web-application-activity,access to a potentially vulnerable web application,2
config classification: web-application-attack,Web Application Attack,1
config classification: misc-activity,Misc activity,3
config classification: misc-attack,Misc Attack,2
config classification: icmp-event,Generic ICMP event,3
config classification: inappropriate-content,Inappropriate Content was Detected,1
config classification: policy-violation,Potential Corporate Privacy Violation,1
config classification: default-login-attempt,Attempt to login by a default username and password,2
config classification: targeted-activity,Targeted Malicious Activity was Detected,1
config classification: exploit-kit,Exploit Kit Activity Detected,1
config classification: external-ip-check,Device Retrieving External IP Address Detected,2
config classification: domain-c2,Domain Observed Used for C2 Detected,1
config classification: pup-activity,Possibly Unwanted Program Detected,2
config classification: credential-theft,Successful Credential Theft Detected,1
config classification: social-engineering,Possible Social Engineering Attempted,2
config classification: coin-mining,Crypto Currency Mining Activity Detected,2
config classification: command-and-control,Malware Command and Control Activity Detected,1
";

/// Default priority of a rule without classtype or priority (Suricata's).
pub(crate) const DEFAULT_PRIORITY: u8 = 3;

#[derive(Debug, Clone, Default)]
pub(crate) struct Classifications {
    map: HashMap<String, (String, u8)>,
}

impl Classifications {
    pub fn builtin() -> Classifications {
        Self::parse(BUILTIN)
    }

    /// Parses `config classification: name,description,priority` lines;
    /// other lines are ignored (as Suricata does with a warning).
    pub fn parse(text: &str) -> Classifications {
        let mut map = HashMap::new();
        for line in text.lines() {
            let t = line.trim();
            let Some(rest) = t.strip_prefix("config classification:") else { continue };
            let mut parts = rest.splitn(3, ',');
            let (Some(name), Some(desc), Some(prio)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let Ok(prio) = prio.trim().parse::<u8>() else { continue };
            map.insert(name.trim().to_ascii_lowercase(), (desc.trim().to_string(), prio));
        }
        Classifications { map }
    }

    pub fn get(&self, name: &str) -> Option<&(String, u8)> {
        self.map.get(&name.trim().to_ascii_lowercase())
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table() {
        let c = Classifications::builtin();
        assert_eq!(c.len(), 43);
        assert_eq!(c.get("trojan-activity"), Some(&("A Network Trojan was detected".to_string(), 1)));
        assert_eq!(c.get("bad-unknown").map(|x| x.1), Some(2));
        let f =
            Classifications::parse("# x\nconfig classification: foo,Foo Bar,4\nconfig classification: bad\n");
        assert_eq!(f.get("FOO"), Some(&("Foo Bar".to_string(), 4)));
        assert!(f.get("bad").is_none());
    }
}
