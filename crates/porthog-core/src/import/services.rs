//! Service names `netstat -a` (without `-n`) prints instead of port numbers: the well-known
//! entries of Windows' `%SystemRoot%\System32\drivers\etc\services` that a capture shows. A
//! name not here is not guessed: its row is counted as one that could not be placed.

/// (name, port), as the services file spells them (netstat prints the first name of an entry).
const SERVICES: [(&str, u16); 52] = [
    ("echo", 7),
    ("discard", 9),
    ("daytime", 13),
    ("qotd", 17),
    ("chargen", 19),
    ("ftp-data", 20),
    ("ftp", 21),
    ("ssh", 22),
    ("telnet", 23),
    ("smtp", 25),
    ("time", 37),
    ("nameserver", 42),
    ("nicname", 43),
    ("domain", 53),
    ("bootps", 67),
    ("bootpc", 68),
    ("tftp", 69),
    ("gopher", 70),
    ("finger", 79),
    ("http", 80),
    ("kerberos", 88),
    ("hostname", 101),
    ("pop3", 110),
    ("sunrpc", 111),
    ("auth", 113),
    ("nntp", 119),
    ("ntp", 123),
    ("epmap", 135),
    ("netbios-ns", 137),
    ("netbios-dgm", 138),
    ("netbios-ssn", 139),
    ("imap", 143),
    ("snmp", 161),
    ("snmptrap", 162),
    ("ldap", 389),
    ("https", 443),
    ("microsoft-ds", 445),
    ("kpasswd", 464),
    ("isakmp", 500),
    ("syslog", 514),
    ("ldaps", 636),
    ("msft-gc", 3268),
    ("msft-gc-ssl", 3269),
    ("ms-sql-s", 1433),
    ("ms-sql-m", 1434),
    ("wins", 1512),
    ("l2tp", 1701),
    ("pptp", 1723),
    ("radius", 1812),
    ("ms-wbt-server", 3389),
    ("ipsec-msft", 4500),
    ("llmnr", 5355),
];

/// The port of a service name (any case), if it is a well-known one.
pub fn port(name: &str) -> Option<u16> {
    SERVICES.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|&(_, p)| p)
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_and_numbers() {
        assert_eq!(super::port("https"), Some(443));
        assert_eq!(super::port("EPMAP"), Some(135));
        assert_eq!(super::port("microsoft-ds"), Some(445));
        assert_eq!(super::port("my-app"), None);
    }
}
