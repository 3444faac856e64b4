//! ARM scopes: `/`, `/providers/Microsoft.Management/managementGroups/{mg}`,
//! `/subscriptions/{sub}`, `.../resourceGroups/{rg}`, `.../providers/{ns}/{type}/{name}...`.
//! Compared case-insensitively, by whole path segments.

/// Why a scope was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeError(pub String);

impl std::fmt::Display for ScopeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the scope `{}` is not valid", self.0)
    }
}

impl std::error::Error for ScopeError {}

/// A normalised scope (lower case, no trailing slash).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope(String);

impl Scope {
    /// Parses and normalises a scope or resource id.
    pub fn parse(s: &str) -> Result<Self, ScopeError> {
        let trimmed = s.trim();
        if !trimmed.starts_with('/')
            || trimmed.contains("//")
            || trimmed.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(ScopeError(s.to_owned()));
        }
        let norm = trimmed.trim_end_matches('/').to_ascii_lowercase();
        let norm = if norm.is_empty() { "/".to_owned() } else { norm };
        let segs: Vec<&str> = norm.split('/').skip(1).filter(|x| !x.is_empty()).collect();
        let ok = match segs.as_slice() {
            [] => true,
            ["providers", "microsoft.management", "managementgroups", _] => true,
            ["subscriptions", _, rest @ ..] => match rest {
                [] => true,
                ["resourcegroups", _, more @ ..] => {
                    more.is_empty() || (more.first() == Some(&"providers") && more.len() >= 4)
                }
                ["providers", ..] => rest.len() >= 3,
                _ => false,
            },
            _ => false,
        };
        if ok {
            Ok(Self(norm))
        } else {
            Err(ScopeError(s.to_owned()))
        }
    }

    /// The normalised text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this scope is `other` or above it.
    pub fn contains(&self, other: &Scope) -> bool {
        self.0 == "/"
            || other.0 == self.0
            || (other.0.starts_with(&self.0) && other.0.as_bytes().get(self.0.len()) == Some(&b'/'))
    }

    /// Whether this is a management-group scope.
    pub fn is_management_group(&self) -> bool {
        self.management_group().is_some()
    }

    /// The management group's id (lower case), when this is a management-group scope.
    pub fn management_group(&self) -> Option<&str> {
        self.0
            .strip_prefix("/providers/microsoft.management/managementgroups/")
    }

    /// The subscription id (lower case) of a subscription scope or anything below one.
    pub fn subscription(&self) -> Option<&str> {
        let rest = self.0.strip_prefix("/subscriptions/")?;
        Some(rest.split('/').next().unwrap_or(rest))
    }
}

#[cfg(test)]
mod tests {
    use super::Scope;

    fn s(x: &str) -> Scope {
        Scope::parse(x).unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[test]
    fn parse_and_contain() {
        let sub = s("/subscriptions/ABC");
        let rg = s("/subscriptions/abc/resourceGroups/RG1/");
        let vm = s("/subscriptions/abc/resourcegroups/rg1/providers/Microsoft.Compute/virtualMachines/vm1");
        assert!(sub.contains(&rg) && sub.contains(&vm) && rg.contains(&vm) && vm.contains(&vm));
        assert!(!rg.contains(&sub));
        assert!(
            !s("/subscriptions/abc/resourceGroups/rg").contains(&rg),
            "segment boundary: rg is not rg1's parent"
        );
        assert!(s("/").contains(&vm));
        assert!(s("/providers/Microsoft.Management/managementGroups/mg1").is_management_group());
        assert_eq!(
            s("/providers/Microsoft.Management/managementGroups/MG1").management_group(),
            Some("mg1")
        );
        assert_eq!(vm.subscription(), Some("abc"));
        assert_eq!(sub.subscription(), Some("abc"));
        assert_eq!(s("/").subscription(), None);
        for bad in [
            "",
            "subscriptions/x",
            "/subscriptions",
            "/foo/bar",
            "/subscriptions/x/resourceGroups",
            "/subscriptions//x",
            "/subscriptions/x/resourceGroups/rg/providers/ns",
        ] {
            assert!(Scope::parse(bad).is_err(), "{bad:?}");
        }
    }
}
