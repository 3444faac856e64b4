//! usher's domain model: the clock and randomness passed into pure code, directory enums, and the
//! tenant password policy.
#![warn(missing_docs)]

pub mod clock;
pub mod password_policy;
pub mod principal;

pub use clock::{Clock, FixedClock, Rng, SystemClock, SystemRng};
pub use password_policy::{PasswordPolicy, PolicyViolation};
pub use principal::{MfaState, UserType};

/// Unix seconds as an RFC 3339 UTC timestamp (`2026-11-25T14:00:00Z`); empty if out of range.
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// Well-known application ids (SPEC D4).
pub mod well_known {
    /// "Azure Windows VM Sign-In": the resource of machine login tokens and SSH certificates.
    pub const VM_SIGN_IN_APP_ID: &str = "372140e0-b3b7-4226-8ef9-d57986796201";
    /// "Microsoft Remote Desktop": the target of the RDP path.
    pub const REMOTE_DESKTOP_APP_ID: &str = "a4a365df-50f1-4397-bc59-1a1564b8bb9c";
    /// The first-party CLI public client (the Azure CLI's client id).
    pub const CLI_APP_ID: &str = "04b07795-8ddb-461a-bbee-02f9e1bf7b46";
    /// "Device Registration Service".
    pub const DEVICE_REGISTRATION_APP_ID: &str = "01cb2876-7ebd-4aa4-9cc9-d28bd4d359a9";
    /// Identifier URI of the Device Registration Service.
    pub const DEVICE_REGISTRATION_URI: &str = "urn:ms-drs:enterpriseregistration.windows.net";
    /// Global Administrator directory role template id (SPEC D8).
    pub const GLOBAL_ADMIN_ROLE: &str = "62e90394-69f5-4237-9190-012177145e10";
    /// Cloud Application Administrator directory role template id (SPEC D8).
    pub const CLOUD_APP_ADMIN_ROLE: &str = "158c047a-c907-4556-b7ef-446551a6b5f7";
    /// User Administrator directory role template id (SPEC D8).
    pub const USER_ADMIN_ROLE: &str = "fe930be7-5e62-47db-91af-98c3a49a38b1";
    /// Conditional Access Administrator directory role template id (SPEC C1).
    pub const CONDITIONAL_ACCESS_ADMIN_ROLE: &str = "b1be1c3e-b65d-4f19-8427-f6fa0d97feb9";
    /// Security Administrator directory role template id (SPEC C1, C4).
    pub const SECURITY_ADMIN_ROLE: &str = "194ae4cb-b126-40b2-bd5b-6091b380977d";
    /// "Windows Azure Service Management API": the app Conditional Access sees for tokens of
    /// usher's own management and Graph APIs.
    pub const MANAGEMENT_APP_ID: &str = "797f4846-ba00-4fd7-ba43-dac1f8f63013";
}
