//! Azure's action wildcards: `*` matches any run of characters (`/` included), everything else
//! matches itself, ignoring ASCII case.

/// A compiled action pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// The literal pieces between `*`s, lower-cased.
    parts: Vec<String>,
    starts_with_star: bool,
    ends_with_star: bool,
}

impl Pattern {
    /// Compiles a pattern such as `Microsoft.Compute/virtualMachines/*/read`.
    pub fn new(pattern: &str) -> Self {
        let lower = pattern.to_ascii_lowercase();
        Self {
            starts_with_star: lower.starts_with('*'),
            ends_with_star: lower.ends_with('*'),
            parts: lower
                .split('*')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }

    /// Whether `action` (already lower-cased) matches.
    pub fn matches_lower(&self, action: &str) -> bool {
        let mut rest = action;
        let n = self.parts.len();
        if n == 0 {
            // "" matches only ""; "*" (and "**") matches anything.
            return self.starts_with_star || rest.is_empty();
        }
        for (i, part) in self.parts.iter().enumerate() {
            let first = i == 0;
            let last = i == n - 1;
            if first && !self.starts_with_star {
                match rest.strip_prefix(part.as_str()) {
                    Some(r) => rest = r,
                    None => return false,
                }
                if last {
                    return self.ends_with_star || rest.is_empty();
                }
                continue;
            }
            if last && !self.ends_with_star {
                // The last piece must end the action; the stars before it absorb the rest.
                return rest.len() >= part.len() && rest.ends_with(part.as_str());
            }
            // Leftmost match is safe for a middle piece: later pieces only need what follows.
            match rest.find(part.as_str()) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
        true
    }

    /// Whether `action` matches (any case).
    pub fn matches(&self, action: &str) -> bool {
        self.matches_lower(&action.to_ascii_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::Pattern;

    /// A naive recursive matcher: the oracle.
    fn oracle(p: &[u8], s: &[u8]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((b'*', rest)) => (0..=s.len()).any(|i| oracle(rest, &s[i..])),
            Some((c, rest)) => s.first().is_some_and(|x| x.eq_ignore_ascii_case(c)) && oracle(rest, &s[1..]),
        }
    }

    #[test]
    fn azure_examples() {
        let p = Pattern::new("Microsoft.Compute/virtualMachines/*/read");
        assert!(p.matches("microsoft.compute/virtualmachines/extensions/read"));
        assert!(
            p.matches("Microsoft.Compute/virtualMachines/a/b/c/read"),
            "* spans slashes"
        );
        assert!(!p.matches("Microsoft.Compute/virtualMachines/read"));
        assert!(Pattern::new("*").matches("Microsoft.Compute/virtualMachines/login/action"));
        assert!(Pattern::new("*/read").matches("Microsoft.Resources/subscriptions/resourceGroups/read"));
        assert!(!Pattern::new("*/read").matches("Microsoft.Resources/subscriptions/resourceGroups/write"));
        assert!(
            Pattern::new("Microsoft.Authorization/*")
                .matches("microsoft.authorization/roleassignments/write")
        );
        assert!(
            Pattern::new("Microsoft.Authorization/*/Write")
                .matches("Microsoft.Authorization/roleAssignments/write")
        );
        assert!(
            !Pattern::new("Microsoft.Authorization/*/Write")
                .matches("Microsoft.Authorization/roleAssignments/read")
        );
        assert!(
            Pattern::new("Microsoft.Compute/virtualMachines/login/action")
                .matches("MICROSOFT.COMPUTE/VIRTUALMACHINES/LOGIN/ACTION")
        );
        assert!(
            !Pattern::new("Microsoft.Compute/virtualMachines/login/action")
                .matches("Microsoft.Compute/virtualMachines/loginAsAdmin/action")
        );
    }

    #[test]
    fn agrees_with_a_naive_oracle() {
        // Deterministic pseudo-random patterns and inputs over a small alphabet (so matches happen).
        let alphabet = b"ab/*";
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        for _ in 0..20_000 {
            let plen = next(7) as usize;
            let p: Vec<u8> = (0..plen).map(|_| alphabet[next(4) as usize]).collect();
            let slen = next(9) as usize;
            let s: Vec<u8> = (0..slen).map(|_| alphabet[next(3) as usize]).collect();
            let (ps, ss) = (
                String::from_utf8(p.clone()).unwrap_or_default(),
                String::from_utf8(s.clone()).unwrap_or_default(),
            );
            assert_eq!(
                Pattern::new(&ps).matches(&ss),
                oracle(&p, &s),
                "pattern {ps:?} on {ss:?}"
            );
        }
    }
}
