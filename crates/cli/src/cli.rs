//! Command-line syntax, modelled on the Azure CLI (`az`): the same command names, option
//! spellings and short options.

use std::path::PathBuf;

use clap::builder::{BoolishValueParser, TypedValueParser as _};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::output::OutputFormat;

/// The default server when neither `--server`, `USHER_SERVER` nor a cached sign-in names one.
pub const DEFAULT_SERVER: &str = "https://127.0.0.1:8443";

/// usher: sign in to an usher directory and manage its users, groups and applications.
#[derive(Debug, Parser)]
#[command(
    name = "usher",
    version,
    about = "usher command-line interface: sign in and manage the directory (mirrors the Azure CLI)",
    propagate_version = true,
    subcommand_required = true,
    arg_required_else_help = true,
    after_help = "Environment: USHER_SERVER, USHER_CA_FILE, USHER_CONFIG_DIR (token cache, default ~/.usher)."
)]
pub struct Cli {
    /// Options every command accepts.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command accepts (before or after the command name).
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// URL of the usher server [default: the signed-in server, else https://127.0.0.1:8443].
    #[arg(
        long,
        env = "USHER_SERVER",
        global = true,
        hide_env_values = true,
        value_name = "URL"
    )]
    pub server: Option<String>,

    /// PEM file with the CA certificate(s) to trust for the server (usherd's DATA_DIR/tls/ca.pem).
    #[arg(
        long = "ca-file",
        env = "USHER_CA_FILE",
        global = true,
        hide_env_values = true,
        value_name = "FILE",
        value_parser = clap::builder::OsStringValueParser::new().map(PathBuf::from)
    )]
    pub ca_file: Option<PathBuf>,

    /// Output format.
    #[arg(
        short = 'o',
        long = "output",
        visible_alias = "out",
        global = true,
        value_enum,
        ignore_case = true,
        default_value_t = OutputFormat::Json,
        value_name = "FORMAT"
    )]
    pub output: OutputFormat,

    /// JMESPath query string applied to the result before it is printed. See http://jmespath.org/.
    #[arg(long, global = true, value_name = "JMESPATH")]
    pub query: Option<String>,

    /// Only show errors, suppressing warnings.
    #[arg(long = "only-show-errors", global = true)]
    pub only_show_errors: bool,
}

impl GlobalArgs {
    /// Treats an empty `--server` / `--ca-file` (an exported but empty `USHER_SERVER` or
    /// `USHER_CA_FILE`) as not given.
    pub fn without_empty_values(mut self) -> Self {
        self.server = self.server.filter(|s| !s.trim().is_empty());
        self.ca_file = self.ca_file.filter(|p| !p.as_os_str().is_empty());
        self
    }
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Log in to usher (device code by default, or --username/--password).
    Login(LoginArgs),
    /// Log out to remove access to usher (deletes the cached tokens).
    Logout,
    /// Manage the signed-in account and get access tokens.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Manage the directory: users, groups, applications, service principals and logs.
    #[command(subcommand)]
    Ad(AdCommand),
    /// Manage resource groups.
    #[command(subcommand)]
    Group(ResourceGroupCommand),
    /// Manage role definitions and role assignments (role-based access control).
    #[command(subcommand)]
    Role(RoleCommand),
    /// Manage virtual machines: the machines people log in to.
    #[command(subcommand)]
    Vm(VmCommand),
    /// Log in to machines over SSH with a short-lived certificate.
    #[command(subcommand)]
    Ssh(SshCommand),
    /// Conditional Access: policies, named locations, what-if, and user risk.
    #[command(subcommand)]
    Ca(CaCommand),
}

/// `usher ca ...`.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Manage Conditional Access policies (Graph conditionalAccessPolicy).
    #[command(subcommand)]
    Policy(CaPolicyCommand),
    /// Manage named locations (IP ranges) that policies name.
    #[command(subcommand)]
    Location(CaLocationCommand),
    /// List the built-in authentication strengths.
    Strengths,
    /// Evaluate a hypothetical sign-in: which policies apply, which do not and why, and the
    /// final decision (report-only policies are listed with what they would have done).
    WhatIf(CaWhatIfArgs),
    /// Manage user risk (risky users, admin-confirmed compromise, dismissal).
    #[command(subcommand)]
    Risk(CaRiskCommand),
}

/// `usher ca policy ...`.
#[derive(Debug, Subcommand)]
pub enum CaPolicyCommand {
    /// Create a policy from a Graph JSON file (--file) or from flags.
    Create(Box<CaPolicyCreateArgs>),
    /// List policies.
    List,
    /// Show a policy (by id or display name).
    Show(CaPolicyArg),
    /// Update a policy from a partial Graph JSON file (--file), or change its state.
    Update(CaPolicyUpdateArgs),
    /// Delete a policy (by id or display name).
    Delete(CaPolicyArg),
}

/// A policy by id or display name.
#[derive(Debug, Clone, Args)]
pub struct CaPolicyArg {
    /// Policy id or display name.
    #[arg(value_name = "POLICY")]
    pub policy: String,
}

/// `usher ca policy create`.
#[derive(Debug, Clone, Args)]
pub struct CaPolicyCreateArgs {
    /// A Graph conditionalAccessPolicy JSON file ('-' for standard input). Excludes the flags.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["name", "users", "block", "mfa", "strength", "joined_device"])]
    pub file: Option<std::path::PathBuf>,
    /// Display name.
    #[arg(long, value_name = "NAME", required_unless_present = "file")]
    pub name: Option<String>,
    /// State: enabled, enabledForReportingButNotEnforced (report-only) or disabled.
    #[arg(long, value_name = "STATE", default_value = "enabled")]
    pub state: String,
    /// Users included: All, or UPNs / object ids (comma-separated).
    #[arg(long, value_name = "USERS", value_delimiter = ',')]
    pub users: Vec<String>,
    /// Users excluded (break-glass accounts): UPNs or object ids.
    #[arg(long = "exclude-users", value_name = "USERS", value_delimiter = ',')]
    pub exclude_users: Vec<String>,
    /// Groups included: display names or object ids.
    #[arg(long, value_name = "GROUPS", value_delimiter = ',')]
    pub groups: Vec<String>,
    /// Groups excluded.
    #[arg(long = "exclude-groups", value_name = "GROUPS", value_delimiter = ',')]
    pub exclude_groups: Vec<String>,
    /// Directory roles included (template ids).
    #[arg(long, value_name = "ROLES", value_delimiter = ',')]
    pub roles: Vec<String>,
    /// Applications included: All, or app ids (default All).
    #[arg(long, value_name = "APPS", value_delimiter = ',')]
    pub apps: Vec<String>,
    /// Applications excluded.
    #[arg(long = "exclude-apps", value_name = "APPS", value_delimiter = ',')]
    pub exclude_apps: Vec<String>,
    /// Client IP ranges it applies to: CIDR ranges or named location ids.
    #[arg(long = "locations", value_name = "RANGES", value_delimiter = ',')]
    pub locations: Vec<String>,
    /// Client IP ranges it does not apply to.
    #[arg(long = "exclude-locations", value_name = "RANGES", value_delimiter = ',')]
    pub exclude_locations: Vec<String>,
    /// Sign-in risk levels it applies to (low, medium, high, none).
    #[arg(long = "sign-in-risk", value_name = "LEVELS", value_delimiter = ',')]
    pub sign_in_risk: Vec<String>,
    /// User risk levels it applies to.
    #[arg(long = "user-risk", value_name = "LEVELS", value_delimiter = ',')]
    pub user_risk: Vec<String>,
    /// Device platforms it applies to (linux, windows, macOS, iOS, android).
    #[arg(long, value_name = "PLATFORMS", value_delimiter = ',')]
    pub platforms: Vec<String>,
    /// Client app types it applies to (browser, mobileAppsAndDesktopClients, other).
    #[arg(long = "client-apps", value_name = "TYPES", value_delimiter = ',')]
    pub client_apps: Vec<String>,
    /// Grant: block access.
    #[arg(long, conflicts_with_all = ["mfa", "strength", "joined_device"])]
    pub block: bool,
    /// Grant: require multi-factor authentication.
    #[arg(long)]
    pub mfa: bool,
    /// Grant: require an authentication strength (mfa, passwordlessMfa, phishingResistantMfa, or its id).
    #[arg(long, value_name = "STRENGTH")]
    pub strength: Option<String>,
    /// Grant: require a joined device.
    #[arg(long = "joined-device")]
    pub joined_device: bool,
    /// How grant controls combine: AND or OR.
    #[arg(long, value_name = "OP", default_value = "OR")]
    pub operator: String,
    /// Session: sign in again after this many hours.
    #[arg(long = "sign-in-frequency-hours", value_name = "HOURS")]
    pub sign_in_frequency_hours: Option<u32>,
}

/// `usher ca policy update`.
#[derive(Debug, Clone, Args)]
pub struct CaPolicyUpdateArgs {
    /// Policy id or display name.
    #[arg(value_name = "POLICY")]
    pub policy: String,
    /// A partial Graph JSON file ('-' for standard input): the properties given replace those stored.
    #[arg(long, value_name = "FILE", required_unless_present = "state")]
    pub file: Option<std::path::PathBuf>,
    /// New state: enabled, enabledForReportingButNotEnforced or disabled.
    #[arg(long, value_name = "STATE")]
    pub state: Option<String>,
}

/// `usher ca location ...`.
#[derive(Debug, Subcommand)]
pub enum CaLocationCommand {
    /// Create a named location of IP ranges.
    Create(CaLocationCreateArgs),
    /// List named locations.
    List,
    /// Delete a named location (refused while a policy names it).
    Delete(CaPolicyArg),
}

/// `usher ca location create`.
#[derive(Debug, Clone, Args)]
pub struct CaLocationCreateArgs {
    /// Display name.
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// CIDR ranges (comma-separated).
    #[arg(long, value_name = "RANGES", value_delimiter = ',', required = true)]
    pub ranges: Vec<String>,
    /// Trusted: included in AllTrusted.
    #[arg(long)]
    pub trusted: bool,
}

/// `usher ca what-if`.
#[derive(Debug, Clone, Args)]
pub struct CaWhatIfArgs {
    /// The user: UPN or object id.
    #[arg(long, value_name = "USER")]
    pub user: String,
    /// The application (resource) id, e.g. the VM Sign-In app 372140e0-b3b7-4226-8ef9-d57986796201.
    #[arg(long, value_name = "APPID")]
    pub app: String,
    /// The client's IP address.
    #[arg(long, value_name = "IP")]
    pub ip: Option<String>,
    /// Sign-in risk: none, low, medium, high (default: the user's current signals).
    #[arg(long, value_name = "LEVEL")]
    pub risk: Option<String>,
    /// User risk (default: the user's current state).
    #[arg(long = "user-risk", value_name = "LEVEL")]
    pub user_risk: Option<String>,
    /// Device platform (default linux).
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// Client app type (default mobileAppsAndDesktopClients).
    #[arg(long = "client-app", value_name = "TYPE")]
    pub client_app: Option<String>,
    /// Methods the sign-in used, as amr values (default pwd; e.g. pwd,otp,mfa or fido,mfa).
    #[arg(long, value_name = "AMR", value_delimiter = ',')]
    pub methods: Vec<String>,
    /// The sign-in is relayed by a joined machine.
    #[arg(long = "joined-device")]
    pub joined_device: bool,
}

/// `usher ca risk ...`.
#[derive(Debug, Subcommand)]
pub enum CaRiskCommand {
    /// List risky users.
    List,
    /// Mark users compromised (user risk high) until dismissed.
    ConfirmCompromised(CaUsersArg),
    /// Dismiss users' risk (the compromise mark and earlier failed attempts).
    Dismiss(CaUsersArg),
}

/// Users by UPN or object id.
#[derive(Debug, Clone, Args)]
pub struct CaUsersArg {
    /// UPNs or object ids.
    #[arg(value_name = "USER", required = true)]
    pub users: Vec<String>,
}

/// `usher ssh ...`.
#[derive(Debug, Subcommand)]
pub enum SshCommand {
    /// SSH into a machine with your directory identity (certificate from your cached sign-in).
    ///
    /// The machine is named by its VM (--resource-group and --name) or by its device name
    /// (--hostname, which must resolve to the machine; IP addresses are refused). Arguments after
    /// `--` go to ssh. The exit status is ssh's.
    Vm(SshVmArgs),
    /// Write an OpenSSH config block (and a one-hour certificate) so plain ssh, scp, rsync and
    /// VS Code reach the machine.
    Config(SshConfigArgs),
}

/// The machine of `usher ssh`.
#[derive(Debug, Clone, Args)]
pub struct SshTargetArgs {
    /// Name of the resource group.
    #[arg(
        short = 'g',
        long = "resource-group",
        value_name = "GROUP",
        requires = "name",
        conflicts_with = "hostname"
    )]
    pub resource_group: Option<String>,

    /// Name of the virtual machine.
    #[arg(short = 'n', long = "name", value_name = "NAME", requires = "resource_group")]
    pub name: Option<String>,

    /// The machine's device name in the directory (resolved by the system resolver).
    #[arg(long, value_name = "HOST", required_unless_present = "resource_group")]
    pub hostname: Option<String>,

    /// Subscription.
    #[command(flatten)]
    pub subscription: SubscriptionArg,
}

/// `usher ssh vm`.
#[derive(Debug, Clone, Args)]
pub struct SshVmArgs {
    /// The machine.
    #[command(flatten)]
    pub target: SshTargetArgs,

    /// SSH port on the machine.
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,

    /// Allow the first sign-in to this machine without asking.
    #[arg(long)]
    pub yes: bool,

    /// A command to run, and ssh options (after `--`).
    #[arg(last = true, value_name = "SSH_ARGS")]
    pub ssh_args: Vec<String>,
}

/// `usher ssh config`.
#[derive(Debug, Clone, Args)]
pub struct SshConfigArgs {
    /// The machine.
    #[command(flatten)]
    pub target: SshTargetArgs,

    /// SSH port on the machine.
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,

    /// Allow the first sign-in to this machine without asking.
    #[arg(long)]
    pub yes: bool,

    /// Add (or replace) the block in this file instead of printing it.
    #[arg(long, value_name = "FILE")]
    pub file: Option<std::path::PathBuf>,

    /// Where the key and certificate go [default: $USHER_CONFIG_DIR/ssh].
    #[arg(long, value_name = "DIR")]
    pub keys_dir: Option<std::path::PathBuf>,
}

/// A VM by resource group and name.
#[derive(Debug, Clone, Args)]
pub struct VmNameArgs {
    /// Name of the resource group.
    #[arg(short = 'g', long = "resource-group", value_name = "GROUP")]
    pub resource_group: String,

    /// Name of the virtual machine.
    #[arg(short = 'n', long = "name", value_name = "NAME")]
    pub name: String,

    /// Subscription.
    #[command(flatten)]
    pub subscription: SubscriptionArg,
}

/// `usher vm ...`.
#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// Create a virtual machine (registers the machine and prints the one-time token its agent joins with).
    Create(VmCreateArgs),
    /// Get the details of a virtual machine.
    Show(VmNameArgs),
    /// List the virtual machines of a resource group, or of the subscription.
    List(VmListArgs),
    /// Delete a virtual machine with its extensions and its managed identity.
    Delete(VmDeleteArgs),
    /// Issue a new one-time join token for the machine's agent (valid 1 hour; replaces the last one).
    OnboardingToken(VmNameArgs),
    /// Manage the VM's system-assigned managed identity.
    #[command(subcommand)]
    Identity(VmIdentityCommand),
    /// Manage VM extensions (the login extension joins the machine to the directory).
    #[command(subcommand)]
    Extension(ExtensionCommand),
}

/// `usher vm create`.
#[derive(Debug, Clone, Args)]
pub struct VmCreateArgs {
    /// Name of the resource group.
    #[arg(short = 'g', long = "resource-group", value_name = "GROUP")]
    pub resource_group: String,

    /// Name of the virtual machine.
    #[arg(short = 'n', long = "name", value_name = "NAME")]
    pub name: String,

    /// Image alias (Debian11, Debian12, Ubuntu2204, Ubuntu2404, Win2019Datacenter, Win2022Datacenter) or URN publisher:offer:sku:version.
    #[arg(long, value_name = "IMAGE")]
    pub image: String,

    /// Operating system of a URN image that is not an alias: Linux or Windows.
    #[arg(long = "os-type", value_name = "OS")]
    pub os_type: Option<String>,

    /// Turn on the system-assigned managed identity.
    #[arg(long = "assign-identity")]
    pub assign_identity: bool,

    /// Log in with directory identities: turns on the identity and sets the login extension.
    #[arg(long = "enable-login")]
    pub enable_login: bool,

    /// The machine's local break-glass administrator.
    #[arg(long = "admin-username", value_name = "USER")]
    pub admin_username: String,

    /// Password of the local administrator.
    #[arg(long = "admin-password", value_name = "PASSWORD")]
    pub admin_password: Option<String>,

    /// SSH public keys (text or file names) of the local administrator.
    #[arg(long = "ssh-key-values", num_args = 1.., value_name = "KEY")]
    pub ssh_key_values: Vec<String>,

    /// Host name [default: the VM's name].
    #[arg(long = "computer-name", value_name = "NAME")]
    pub computer_name: Option<String>,

    /// Location [default: the resource group's].
    #[arg(short = 'l', long, value_name = "LOCATION")]
    pub location: Option<String>,

    /// Size (a label).
    #[arg(long, default_value = "Standard_DS1_v2", value_name = "SIZE")]
    pub size: String,

    /// Space-separated tags: key[=value] [key[=value] ...].
    #[arg(long, num_args = 0.., value_name = "TAG")]
    pub tags: Option<Vec<String>>,

    /// Subscription.
    #[command(flatten)]
    pub subscription: SubscriptionArg,
}

/// `usher vm list`.
#[derive(Debug, Clone, Args)]
pub struct VmListArgs {
    /// Only the VMs of this resource group.
    #[arg(short = 'g', long = "resource-group", value_name = "GROUP")]
    pub resource_group: Option<String>,

    /// Subscription.
    #[command(flatten)]
    pub subscription: SubscriptionArg,
}

/// `usher vm delete`.
#[derive(Debug, Clone, Args)]
pub struct VmDeleteArgs {
    /// The VM.
    #[command(flatten)]
    pub vm: VmNameArgs,

    /// Do not prompt for confirmation.
    #[arg(short = 'y', long)]
    pub yes: bool,
}

/// `usher vm identity ...`.
#[derive(Debug, Subcommand)]
pub enum VmIdentityCommand {
    /// Turn on the system-assigned managed identity of an existing VM.
    Assign(VmNameArgs),
    /// Show the VM's managed identity.
    Show(VmNameArgs),
}

/// A VM by resource group and name, as `vm extension` names it (`--vm-name`).
#[derive(Debug, Clone, Args)]
pub struct ExtensionVmArgs {
    /// Name of the resource group.
    #[arg(short = 'g', long = "resource-group", value_name = "GROUP")]
    pub resource_group: String,

    /// Name of the virtual machine.
    #[arg(long = "vm-name", value_name = "VM")]
    pub vm_name: String,

    /// Subscription.
    #[command(flatten)]
    pub subscription: SubscriptionArg,
}

/// `usher vm extension ...`.
#[derive(Debug, Subcommand)]
pub enum ExtensionCommand {
    /// Set (install or update) an extension; waits (60 s by default) for the machine to apply it.
    #[command(disable_version_flag = true)]
    Set(ExtensionSetArgs),
    /// Show an extension.
    Show(ExtensionShowArgs),
    /// List a VM's extensions.
    List(ExtensionVmArgs),
    /// Delete an extension (the machine leaves the directory when it is the login extension).
    Delete(ExtensionDeleteArgs),
}

/// An extension of a VM.
#[derive(Debug, Clone, Args)]
pub struct ExtensionNameArgs {
    /// Name of the extension, e.g. AADSSHLoginForLinux.
    #[arg(short = 'n', long = "name", value_name = "NAME")]
    pub name: String,

    /// Name of the resource group.
    #[arg(short = 'g', long = "resource-group", value_name = "GROUP")]
    pub resource_group: String,

    /// Name of the virtual machine.
    #[arg(long = "vm-name", value_name = "VM")]
    pub vm_name: String,

    /// Subscription.
    #[command(flatten)]
    pub subscription: SubscriptionArg,
}

/// `usher vm extension show`.
#[derive(Debug, Clone, Args)]
pub struct ExtensionShowArgs {
    /// The extension.
    #[command(flatten)]
    pub extension: ExtensionNameArgs,

    /// Include the instance view (the status the machine reported).
    #[arg(long = "instance-view")]
    pub instance_view: bool,
}

impl std::ops::Deref for ExtensionShowArgs {
    type Target = ExtensionNameArgs;
    fn deref(&self) -> &ExtensionNameArgs {
        &self.extension
    }
}

/// `usher vm extension set`.
#[derive(Debug, Clone, Args)]
pub struct ExtensionSetArgs {
    /// Name of the extension (its type), e.g. AADSSHLoginForLinux.
    #[arg(short = 'n', long = "name", value_name = "NAME")]
    pub name: String,

    /// Publisher, e.g. Microsoft.Azure.ActiveDirectory.
    #[arg(long, value_name = "PUBLISHER")]
    pub publisher: String,

    /// Name of the resource group.
    #[arg(short = 'g', long = "resource-group", value_name = "GROUP")]
    pub resource_group: String,

    /// Name of the virtual machine.
    #[arg(long = "vm-name", value_name = "VM")]
    pub vm_name: String,

    /// Handler version (major.minor) [default: the newest].
    #[arg(long = "version", value_name = "VERSION")]
    pub handler_version: Option<String>,

    /// Settings: JSON text or @file.
    #[arg(long, value_name = "JSON")]
    pub settings: Option<String>,

    /// Protected settings (sealed at rest, never shown): JSON text or @file.
    #[arg(long = "protected-settings", value_name = "JSON")]
    pub protected_settings: Option<String>,

    /// Do not upgrade minor versions automatically.
    #[arg(long = "no-auto-upgrade")]
    pub no_auto_upgrade: bool,

    /// Run the extension again even if nothing changed.
    #[arg(long = "force-update")]
    pub force_update: bool,

    /// Return at once instead of waiting for the machine.
    #[arg(long = "no-wait")]
    pub no_wait: bool,

    /// How long to wait for the machine before printing the current state.
    #[arg(long = "timeout", default_value_t = 60, value_name = "SECONDS")]
    pub timeout: u64,

    /// Subscription.
    #[command(flatten)]
    pub subscription: SubscriptionArg,
}

/// `usher vm extension delete`.
#[derive(Debug, Clone, Args)]
pub struct ExtensionDeleteArgs {
    /// The extension.
    #[command(flatten)]
    pub extension: ExtensionNameArgs,

    /// Return at once instead of waiting for the machine to remove it.
    #[arg(long = "no-wait")]
    pub no_wait: bool,

    /// How long to wait for the machine before printing the current state.
    #[arg(long = "timeout", default_value_t = 60, value_name = "SECONDS")]
    pub timeout: u64,
}

/// `usher login`.
#[derive(Debug, Clone, Args)]
pub struct LoginArgs {
    /// User name (UPN, user@domain) for the password sign-in; needs --password.
    #[arg(short = 'u', long, requires = "password", value_name = "USER")]
    pub username: Option<String>,

    /// Password for --username.
    #[arg(short = 'p', long, requires = "username", value_name = "PASSWORD")]
    pub password: Option<String>,

    /// The tenant (id or verified domain) to sign in to [default: the domain of --username, else "organizations"].
    #[arg(short = 't', long, value_name = "TENANT")]
    pub tenant: Option<String>,

    /// Use the device-code flow (the default when no --username is given).
    #[arg(long = "use-device-code", conflicts_with = "username")]
    pub use_device_code: bool,

    /// Succeed even without subscription access and list the tenant-level account.
    #[arg(long = "allow-no-subscriptions")]
    pub allow_no_subscriptions: bool,
}

/// `usher account ...`.
#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Show the signed-in account (the default subscription, or the tenant-level account).
    Show,
    /// List the subscriptions seen at login.
    List,
    /// Get an access token for the signed-in user.
    GetAccessToken(GetAccessTokenArgs),
}

/// `usher account get-access-token`.
#[derive(Debug, Clone, Args)]
pub struct GetAccessTokenArgs {
    /// Resource (URI or app id) the token is for [default: the usher server, for Graph and ARM].
    #[arg(long, conflicts_with = "scope", value_name = "RESOURCE")]
    pub resource: Option<String>,

    /// Space-separated scopes to request instead of a resource (e.g. api://app/.default).
    #[arg(long, num_args = 1.., value_name = "SCOPE")]
    pub scope: Vec<String>,
}

/// `usher ad ...`.
#[derive(Debug, Subcommand)]
pub enum AdCommand {
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage groups and their members.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Manage service principals.
    #[command(subcommand)]
    Sp(SpCommand),
    /// Manage applications.
    #[command(subcommand)]
    App(AppCommand),
    /// Read the sign-in log.
    #[command(subcommand)]
    Signin(SigninCommand),
    /// Read the directory audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
}

/// A boolean option written as `--flag`, `--flag true` or `--flag false`, as az accepts.
fn boolish() -> BoolishValueParser {
    BoolishValueParser::new()
}

/// Per-user MFA state (the legacy StrongAuthenticationRequirements).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MfaState {
    /// No per-user MFA.
    Disabled,
    /// MFA required at sign-in; the user may still register.
    Enabled,
    /// MFA required at sign-in, registration done.
    Enforced,
}

impl MfaState {
    /// The Graph value.
    pub fn as_str(self) -> &'static str {
        match self {
            MfaState::Disabled => "disabled",
            MfaState::Enabled => "enabled",
            MfaState::Enforced => "enforced",
        }
    }
}

/// `usher ad user ...`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user.
    Create(UserCreateArgs),
    /// List users.
    List(UserListArgs),
    /// Show a user.
    Show(IdArg),
    /// Update a user: name, password, enabled state, per-user MFA state.
    Update(UserUpdateArgs),
    /// Delete a user.
    Delete(IdArg),
    /// Clear a user's smart lockout.
    Unlock(IdArg),
}

/// A required `--id` (object id, or UPN for users, or app id for applications/SPs).
#[derive(Debug, Clone, Args)]
pub struct IdArg {
    /// Object id or user principal name (apps and service principals: object id or app id).
    #[arg(long, value_name = "ID")]
    pub id: String,
}

/// `usher ad user create`.
#[derive(Debug, Clone, Args)]
pub struct UserCreateArgs {
    /// Display name of the user.
    #[arg(long = "display-name", value_name = "NAME")]
    pub display_name: String,

    /// User principal name, e.g. alice@contoso.test.
    #[arg(long = "user-principal-name", value_name = "UPN")]
    pub user_principal_name: String,

    /// The user's password.
    #[arg(long, value_name = "PASSWORD")]
    pub password: String,

    /// Make the user change the password at next sign-in (a temporary password).
    #[arg(
        long = "force-change-password-next-sign-in",
        num_args = 0..=1,
        default_missing_value = "true",
        default_value = "false",
        value_parser = boolish(),
        value_name = "BOOL"
    )]
    pub force_change_password_next_sign_in: bool,

    /// Whether the account is enabled.
    #[arg(
        long = "account-enabled",
        num_args = 0..=1,
        default_missing_value = "true",
        default_value = "true",
        value_parser = boolish(),
        value_name = "BOOL"
    )]
    pub account_enabled: bool,

    /// Mail alias [default: the local part of the user principal name].
    #[arg(long = "mail-nickname", value_name = "ALIAS")]
    pub mail_nickname: Option<String>,
}

/// `usher ad user list`.
#[derive(Debug, Clone, Args)]
pub struct UserListArgs {
    /// Only the user with this user principal name.
    #[arg(long, value_name = "UPN")]
    pub upn: Option<String>,

    /// Only users whose display name is this.
    #[arg(long = "display-name", value_name = "NAME")]
    pub display_name: Option<String>,

    /// OData filter, e.g. "accountEnabled eq false".
    #[arg(long, value_name = "FILTER")]
    pub filter: Option<String>,
}

/// `usher ad user update`.
#[derive(Debug, Clone, Args)]
pub struct UserUpdateArgs {
    /// Object id or user principal name.
    #[arg(long, value_name = "ID")]
    pub id: String,

    /// New display name.
    #[arg(long = "display-name", value_name = "NAME")]
    pub display_name: Option<String>,

    /// New password.
    #[arg(long, value_name = "PASSWORD")]
    pub password: Option<String>,

    /// Make the user change the password at next sign-in.
    #[arg(
        long = "force-change-password-next-sign-in",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = boolish(),
        value_name = "BOOL"
    )]
    pub force_change_password_next_sign_in: Option<bool>,

    /// Enable (true) or disable (false) the account.
    #[arg(
        long = "account-enabled",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = boolish(),
        value_name = "BOOL"
    )]
    pub account_enabled: Option<bool>,

    /// Per-user MFA state.
    #[arg(long = "mfa-state", value_enum, ignore_case = true, value_name = "STATE")]
    pub mfa_state: Option<MfaState>,
}

/// `--group/-g` naming a group by display name or object id.
#[derive(Debug, Clone, Args)]
pub struct GroupArg {
    /// Group's display name or object id.
    #[arg(short = 'g', long, value_name = "GROUP")]
    pub group: String,
}

/// `usher ad group ...`.
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Create a security group.
    Create(GroupCreateArgs),
    /// List groups.
    List(GroupListArgs),
    /// Show a group.
    Show(GroupArg),
    /// Delete a group.
    Delete(GroupArg),
    /// Manage a group's members.
    #[command(subcommand)]
    Member(MemberCommand),
}

/// `usher ad group create`.
#[derive(Debug, Clone, Args)]
pub struct GroupCreateArgs {
    /// Display name of the group.
    #[arg(long = "display-name", value_name = "NAME")]
    pub display_name: String,

    /// Mail alias of the group.
    #[arg(long = "mail-nickname", value_name = "ALIAS")]
    pub mail_nickname: String,

    /// Description of the group.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
}

/// `usher ad group list`.
#[derive(Debug, Clone, Args)]
pub struct GroupListArgs {
    /// Only groups with this display name.
    #[arg(long = "display-name", value_name = "NAME")]
    pub display_name: Option<String>,

    /// OData filter.
    #[arg(long, value_name = "FILTER")]
    pub filter: Option<String>,
}

/// `usher ad group member ...`.
#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Add a member (user, group or service principal) to a group.
    Add(MemberArgs),
    /// Remove a member from a group.
    Remove(MemberArgs),
    /// List a group's direct members.
    List(GroupArg),
    /// Check whether an object is a member of a group (directly or through nested groups).
    Check(MemberArgs),
}

/// A group and a member object id.
#[derive(Debug, Clone, Args)]
pub struct MemberArgs {
    /// Group's display name or object id.
    #[arg(short = 'g', long, value_name = "GROUP")]
    pub group: String,

    /// Object id of the member (user, group or service principal).
    #[arg(long = "member-id", value_name = "ID")]
    pub member_id: String,
}

/// `usher ad sp ...`.
#[derive(Debug, Subcommand)]
pub enum SpCommand {
    /// List service principals.
    List(SpListArgs),
    /// Show a service principal.
    Show(IdArg),
    /// Create the service principal of an application (recreates a missing built-in).
    Create(IdArg),
    /// Delete a service principal.
    Delete(IdArg),
}

/// `usher ad sp list` / `usher ad app list`.
#[derive(Debug, Clone, Args)]
pub struct SpListArgs {
    /// Only objects whose display name contains this text.
    #[arg(long = "display-name", value_name = "NAME")]
    pub display_name: Option<String>,

    /// Only the object of this application id.
    #[arg(long = "app-id", value_name = "APPID")]
    pub app_id: Option<String>,

    /// OData filter.
    #[arg(long, value_name = "FILTER")]
    pub filter: Option<String>,
}

/// `usher ad app ...`.
#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Create an application.
    Create(AppCreateArgs),
    /// List applications.
    List(SpListArgs),
    /// Show an application.
    Show(IdArg),
    /// Delete an application.
    Delete(IdArg),
    /// Manage an application's password credentials.
    #[command(subcommand)]
    Credential(CredentialCommand),
}

/// `usher ad app create`.
#[derive(Debug, Clone, Args)]
pub struct AppCreateArgs {
    /// Display name of the application.
    #[arg(long = "display-name", value_name = "NAME")]
    pub display_name: String,

    /// Space-separated redirect URIs of the web platform.
    #[arg(long = "web-redirect-uris", num_args = 1.., value_name = "URI")]
    pub web_redirect_uris: Vec<String>,

    /// Space-separated redirect URIs of the public-client (mobile and desktop) platform.
    #[arg(long = "public-client-redirect-uris", num_args = 1.., value_name = "URI")]
    pub public_client_redirect_uris: Vec<String>,

    /// Space-separated identifier URIs (e.g. api://my-app).
    #[arg(long = "identifier-uris", num_args = 1.., value_name = "URI")]
    pub identifier_uris: Vec<String>,

    /// Treat the application as a public client (allows public-client flows).
    #[arg(
        long = "is-fallback-public-client",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = boolish(),
        value_name = "BOOL"
    )]
    pub is_fallback_public_client: Option<bool>,
}

/// `usher ad app credential ...`.
#[derive(Debug, Subcommand)]
pub enum CredentialCommand {
    /// Add a new client secret (password) to an application and print it once.
    Reset(CredentialResetArgs),
}

/// `usher ad app credential reset`.
#[derive(Debug, Clone, Args)]
pub struct CredentialResetArgs {
    /// Application's app id or object id.
    #[arg(long, value_name = "ID")]
    pub id: String,

    /// Friendly name of the secret.
    #[arg(long = "display-name", value_name = "NAME")]
    pub display_name: Option<String>,

    /// Keep existing secrets (usher always keeps them; accepted for az compatibility).
    #[arg(long)]
    pub append: bool,
}

/// `usher ad signin ...`.
#[derive(Debug, Subcommand)]
pub enum SigninCommand {
    /// List sign-in events, newest first.
    List(SigninListArgs),
}

/// `usher ad signin list`.
#[derive(Debug, Clone, Args)]
pub struct SigninListArgs {
    /// Only sign-ins of this user principal name.
    #[arg(long, value_name = "UPN")]
    pub upn: Option<String>,

    /// At most this many events.
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,
}

/// `usher ad audit ...`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List directory audit events, newest first.
    List(TopArgs),
}

/// `--top N`.
#[derive(Debug, Clone, Args)]
pub struct TopArgs {
    /// At most this many events.
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,
}

/// `--subscription`, accepted by every resource-manager command.
#[derive(Debug, Clone, Args)]
pub struct SubscriptionArg {
    /// Subscription id or name [default: the default subscription of the signed-in account].
    #[arg(long, value_name = "ID")]
    pub subscription: Option<String>,
}

/// `usher group ...` (resource groups).
#[derive(Debug, Subcommand)]
pub enum ResourceGroupCommand {
    /// Create a new resource group (or update the tags of an existing one).
    Create(ResourceGroupCreateArgs),
    /// Get a resource group.
    Show(ResourceGroupNameArgs),
    /// List the resource groups of the subscription.
    List(SubscriptionArg),
    /// Delete a resource group.
    Delete(ResourceGroupDeleteArgs),
    /// Check whether a resource group exists (prints true or false).
    Exists(ResourceGroupNameArgs),
}

/// `usher group create`.
#[derive(Debug, Clone, Args)]
pub struct ResourceGroupCreateArgs {
    /// Name of the new resource group.
    #[arg(
        short = 'n',
        long = "name",
        visible_short_alias = 'g',
        visible_alias = "resource-group",
        value_name = "NAME"
    )]
    pub name: String,

    /// Location, e.g. southcentralus.
    #[arg(short = 'l', long, value_name = "LOCATION")]
    pub location: String,

    /// Space-separated tags: key[=value] [key[=value] ...].
    #[arg(long, num_args = 0.., value_name = "TAG")]
    pub tags: Option<Vec<String>>,

    /// Subscription.
    #[command(flatten)]
    pub subscription: SubscriptionArg,
}

/// A resource group by name (`-n/--name` or `-g/--resource-group`).
#[derive(Debug, Clone, Args)]
pub struct ResourceGroupNameArgs {
    /// Name of the resource group.
    #[arg(
        short = 'n',
        long = "name",
        visible_short_alias = 'g',
        visible_alias = "resource-group",
        value_name = "NAME"
    )]
    pub name: String,

    /// Subscription.
    #[command(flatten)]
    pub subscription: SubscriptionArg,
}

/// `usher group delete`.
#[derive(Debug, Clone, Args)]
pub struct ResourceGroupDeleteArgs {
    /// The resource group.
    #[command(flatten)]
    pub group: ResourceGroupNameArgs,

    /// Do not prompt for confirmation.
    #[arg(short = 'y', long)]
    pub yes: bool,

    /// Do not wait for the deletion to finish (it always finishes at once; accepted for az compatibility).
    #[arg(long = "no-wait")]
    pub no_wait: bool,
}

/// `usher role ...`.
#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Manage role definitions.
    #[command(subcommand)]
    Definition(RoleDefinitionCommand),
    /// Manage role assignments.
    #[command(subcommand)]
    Assignment(RoleAssignmentCommand),
}

/// `usher role definition ...`.
#[derive(Debug, Subcommand)]
pub enum RoleDefinitionCommand {
    /// List role definitions.
    List(RoleDefinitionListArgs),
    /// Create a custom role.
    Create(RoleDefinitionCreateArgs),
    /// Delete a custom role.
    Delete(RoleDefinitionDeleteArgs),
}

/// `usher role definition create`.
#[derive(Debug, Clone, Args)]
pub struct RoleDefinitionCreateArgs {
    /// The role as JSON text or @file, in the Azure CLI's form: {"Name", "Description",
    /// "Actions", "NotActions", "DataActions", "NotDataActions", "AssignableScopes"}.
    #[arg(long = "role-definition", value_name = "JSON")]
    pub role_definition: String,
}

/// `usher role definition delete`.
#[derive(Debug, Clone, Args)]
pub struct RoleDefinitionDeleteArgs {
    /// Name or id of the custom role.
    #[arg(short = 'n', long = "name", value_name = "ROLE")]
    pub name: String,

    /// Scope at which to look the role up [default: the subscription].
    #[arg(long, value_name = "SCOPE")]
    pub scope: Option<String>,

    /// Subscription.
    #[command(flatten)]
    pub subscription: SubscriptionArg,
}

/// `usher role definition list`.
#[derive(Debug, Clone, Args)]
pub struct RoleDefinitionListArgs {
    /// Only the role with this name (e.g. "Virtual Machine User Login").
    #[arg(short = 'n', long = "name", value_name = "ROLE_NAME")]
    pub name: Option<String>,

    /// Scope at which the role definitions are listed [default: the subscription].
    #[arg(long, value_name = "SCOPE")]
    pub scope: Option<String>,

    /// Subscription.
    #[command(flatten)]
    pub subscription: SubscriptionArg,
}

/// The principal types a role assignment can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "PascalCase")]
pub enum PrincipalType {
    /// A user.
    User,
    /// A security group.
    Group,
    /// A service principal (including managed identities).
    ServicePrincipal,
    /// A foreign group.
    ForeignGroup,
}

impl PrincipalType {
    /// The value ARM uses.
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalType::User => "User",
            PrincipalType::Group => "Group",
            PrincipalType::ServicePrincipal => "ServicePrincipal",
            PrincipalType::ForeignGroup => "ForeignGroup",
        }
    }
}

/// `usher role assignment ...`.
#[derive(Debug, Subcommand)]
pub enum RoleAssignmentCommand {
    /// Create a role assignment for a user, group or service principal.
    Create(RoleAssignmentCreateArgs),
    /// List role assignments (by default those at the subscription scope; --all for every scope).
    List(RoleAssignmentListArgs),
    /// Delete role assignments, by id or by assignee, role and scope.
    Delete(RoleAssignmentDeleteArgs),
}

/// `usher role assignment create`.
#[derive(Debug, Clone, Args)]
pub struct RoleAssignmentCreateArgs {
    /// Role name (e.g. "Virtual Machine Administrator Login") or role definition id.
    #[arg(long, value_name = "ROLE")]
    pub role: String,

    /// Who gets the role: user principal name, object id, group name, or service principal app id or name.
    #[arg(
        long,
        value_name = "ASSIGNEE",
        required_unless_present = "assignee_object_id",
        conflicts_with = "assignee_object_id"
    )]
    pub assignee: Option<String>,

    /// Object id of the assignee, used as given without a directory lookup (e.g. a principal of another directory).
    #[arg(long = "assignee-object-id", value_name = "OBJECT_ID")]
    pub assignee_object_id: Option<String>,

    /// Type of the --assignee-object-id principal.
    #[arg(
        long = "assignee-principal-type",
        value_enum,
        ignore_case = true,
        requires = "assignee_object_id",
        value_name = "TYPE"
    )]
    pub assignee_principal_type: Option<PrincipalType>,

    /// Scope of the assignment, e.g. /subscriptions/{sub}/resourceGroups/{rg} [default: the subscription].
    #[arg(long, value_name = "SCOPE", conflicts_with = "resource_group")]
    pub scope: Option<String>,

    /// Resource group whose scope the assignment is made at.
    #[arg(short = 'g', long = "resource-group", value_name = "NAME")]
    pub resource_group: Option<String>,

    /// Subscription.
    #[command(flatten)]
    pub subscription: SubscriptionArg,
}

/// `usher role assignment list`.
#[derive(Debug, Clone, Args)]
pub struct RoleAssignmentListArgs {
    /// Only assignments of this principal: user principal name, object id, group name, or service principal.
    #[arg(long, value_name = "ASSIGNEE")]
    pub assignee: Option<String>,

    /// Only assignments of this role (name or id).
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,

    /// Only assignments at this scope [default: the subscription].
    #[arg(long, value_name = "SCOPE", conflicts_with = "resource_group")]
    pub scope: Option<String>,

    /// Only assignments at the scope of this resource group.
    #[arg(short = 'g', long = "resource-group", value_name = "NAME")]
    pub resource_group: Option<String>,

    /// Assignments at every scope of the subscription (the subscription, its resource groups and resources).
    #[arg(long, conflicts_with_all = ["scope", "resource_group"])]
    pub all: bool,

    /// Also assignments at scopes above --scope (inherited).
    #[arg(long = "include-inherited")]
    pub include_inherited: bool,

    /// Subscription.
    #[command(flatten)]
    pub subscription: SubscriptionArg,
}

/// `usher role assignment delete`.
#[derive(Debug, Clone, Args)]
pub struct RoleAssignmentDeleteArgs {
    /// Space-separated role assignment ids (the `id` that `role assignment list` prints).
    #[arg(long, num_args = 1.., value_name = "ID", conflicts_with_all = ["assignee", "role", "scope", "resource_group"])]
    pub ids: Vec<String>,

    /// Delete the assignments of this principal.
    #[arg(long, value_name = "ASSIGNEE")]
    pub assignee: Option<String>,

    /// Delete the assignments of this role (name or id).
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,

    /// Delete the assignments at this scope [default: the subscription].
    #[arg(long, value_name = "SCOPE", conflicts_with = "resource_group")]
    pub scope: Option<String>,

    /// Delete the assignments at the scope of this resource group.
    #[arg(short = 'g', long = "resource-group", value_name = "NAME")]
    pub resource_group: Option<String>,

    /// Subscription.
    #[command(flatten)]
    pub subscription: SubscriptionArg,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("usher").chain(args.iter().copied()))
    }

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_after_the_command() -> Result<(), clap::Error> {
        let cli = parse(&["account", "show", "--query", "user.name", "--output", "tsv"])?;
        assert_eq!(cli.global.output, OutputFormat::Tsv);
        assert_eq!(cli.global.query.as_deref(), Some("user.name"));
        assert!(matches!(cli.command, Command::Account(AccountCommand::Show)));
        let cli = parse(&["-o", "table", "ad", "user", "list", "--out", "jsonc"])?;
        assert_eq!(cli.global.output, OutputFormat::Jsonc);
        let cli = parse(&["ad", "user", "list", "-o", "TSV"])?;
        assert_eq!(cli.global.output, OutputFormat::Tsv);
        Ok(())
    }

    #[test]
    fn empty_server_and_ca_file_are_not_given() -> Result<(), clap::Error> {
        let cli = parse(&["account", "show", "--server", "", "--ca-file", ""])?;
        let global = cli.global.without_empty_values();
        assert_eq!(global.server, None);
        assert_eq!(global.ca_file, None);
        let cli = parse(&[
            "account",
            "show",
            "--server",
            "https://h:1",
            "--ca-file",
            "ca.pem",
        ])?;
        let global = cli.global.without_empty_values();
        assert_eq!(global.server.as_deref(), Some("https://h:1"));
        assert_eq!(global.ca_file, Some(PathBuf::from("ca.pem")));
        Ok(())
    }

    #[test]
    fn default_output_is_json() -> Result<(), clap::Error> {
        let cli = parse(&["logout"])?;
        assert_eq!(cli.global.output, OutputFormat::Json);
        Ok(())
    }

    #[test]
    fn login_password_short_options() -> Result<(), clap::Error> {
        let cli = parse(&[
            "login",
            "-u",
            "admin@contoso.test",
            "-p",
            "pw",
            "-t",
            "contoso.test",
            "--server",
            "https://localhost:9443",
            "--ca-file",
            "/tmp/ca.pem",
        ])?;
        let Command::Login(args) = cli.command else {
            return Err(clap::Error::new(ErrorKind::InvalidSubcommand));
        };
        assert_eq!(args.username.as_deref(), Some("admin@contoso.test"));
        assert_eq!(args.password.as_deref(), Some("pw"));
        assert_eq!(args.tenant.as_deref(), Some("contoso.test"));
        assert_eq!(cli.global.server.as_deref(), Some("https://localhost:9443"));
        assert_eq!(cli.global.ca_file, Some(PathBuf::from("/tmp/ca.pem")));
        Ok(())
    }

    #[test]
    fn login_username_needs_password() {
        let err = parse(&["login", "-u", "admin@contoso.test"]).err();
        assert_eq!(err.map(|e| e.kind()), Some(ErrorKind::MissingRequiredArgument));
        assert_eq!(
            parse(&["login", "--use-device-code", "-u", "a", "-p", "b"])
                .err()
                .map(|e| e.kind()),
            Some(ErrorKind::ArgumentConflict)
        );
    }

    #[test]
    fn user_create_defaults_and_booleans() -> Result<(), clap::Error> {
        let base = [
            "ad",
            "user",
            "create",
            "--display-name",
            "Alice",
            "--user-principal-name",
            "alice@contoso.test",
            "--password",
            "S3cure!pass",
        ];
        let cli = parse(&base)?;
        let Command::Ad(AdCommand::User(UserCommand::Create(a))) = cli.command else {
            return Err(clap::Error::new(ErrorKind::InvalidSubcommand));
        };
        assert!(!a.force_change_password_next_sign_in);
        assert!(a.account_enabled);

        let mut with_flag = base.to_vec();
        with_flag.push("--force-change-password-next-sign-in");
        let cli = parse(&with_flag)?;
        let Command::Ad(AdCommand::User(UserCommand::Create(a))) = cli.command else {
            return Err(clap::Error::new(ErrorKind::InvalidSubcommand));
        };
        assert!(a.force_change_password_next_sign_in);

        let mut explicit = base.to_vec();
        explicit.extend([
            "--force-change-password-next-sign-in",
            "false",
            "--account-enabled",
            "false",
        ]);
        let cli = parse(&explicit)?;
        let Command::Ad(AdCommand::User(UserCommand::Create(a))) = cli.command else {
            return Err(clap::Error::new(ErrorKind::InvalidSubcommand));
        };
        assert!(!a.force_change_password_next_sign_in);
        assert!(!a.account_enabled);
        Ok(())
    }

    #[test]
    fn user_create_requires_its_options() {
        let err = parse(&["ad", "user", "create", "--display-name", "A"]).err();
        assert_eq!(err.map(|e| e.kind()), Some(ErrorKind::MissingRequiredArgument));
    }

    #[test]
    fn user_update_options() -> Result<(), clap::Error> {
        let cli = parse(&[
            "ad",
            "user",
            "update",
            "--id",
            "bob@contoso.test",
            "--account-enabled",
            "false",
            "--mfa-state",
            "enforced",
        ])?;
        let Command::Ad(AdCommand::User(UserCommand::Update(a))) = cli.command else {
            return Err(clap::Error::new(ErrorKind::InvalidSubcommand));
        };
        assert_eq!(a.id, "bob@contoso.test");
        assert_eq!(a.account_enabled, Some(false));
        assert_eq!(a.mfa_state, Some(MfaState::Enforced));
        assert_eq!(a.force_change_password_next_sign_in, None);
        assert!(parse(&["ad", "user", "update", "--id", "x", "--mfa-state", "sometimes"]).is_err());
        Ok(())
    }

    #[test]
    fn group_member_short_options() -> Result<(), clap::Error> {
        let cli = parse(&[
            "ad",
            "group",
            "member",
            "add",
            "-g",
            "Admins",
            "--member-id",
            "m1",
        ])?;
        let Command::Ad(AdCommand::Group(GroupCommand::Member(MemberCommand::Add(a)))) = cli.command else {
            return Err(clap::Error::new(ErrorKind::InvalidSubcommand));
        };
        assert_eq!(a.group, "Admins");
        assert_eq!(a.member_id, "m1");
        let cli = parse(&["ad", "group", "show", "--group", "Admins"])?;
        assert!(matches!(
            cli.command,
            Command::Ad(AdCommand::Group(GroupCommand::Show(_)))
        ));
        Ok(())
    }

    #[test]
    fn app_create_lists() -> Result<(), clap::Error> {
        let cli = parse(&[
            "ad",
            "app",
            "create",
            "--display-name",
            "web",
            "--web-redirect-uris",
            "https://a/cb",
            "https://b/cb",
            "--is-fallback-public-client",
        ])?;
        let Command::Ad(AdCommand::App(AppCommand::Create(a))) = cli.command else {
            return Err(clap::Error::new(ErrorKind::InvalidSubcommand));
        };
        assert_eq!(a.web_redirect_uris, vec!["https://a/cb", "https://b/cb"]);
        assert_eq!(a.is_fallback_public_client, Some(true));
        assert!(a.identifier_uris.is_empty());
        Ok(())
    }

    #[test]
    fn signin_list_top() -> Result<(), clap::Error> {
        let cli = parse(&["ad", "signin", "list", "--upn", "a@b", "--top", "5"])?;
        let Command::Ad(AdCommand::Signin(SigninCommand::List(a))) = cli.command else {
            return Err(clap::Error::new(ErrorKind::InvalidSubcommand));
        };
        assert_eq!(a.top, Some(5));
        assert!(parse(&["ad", "signin", "list", "--top", "many"]).is_err());
        Ok(())
    }

    #[test]
    fn version_and_help_and_bad_output() {
        assert_eq!(
            parse(&["--version"]).err().map(|e| e.kind()),
            Some(ErrorKind::DisplayVersion)
        );
        assert_eq!(
            parse(&["ad", "user", "--help"]).err().map(|e| e.kind()),
            Some(ErrorKind::DisplayHelp)
        );
        assert_eq!(
            parse(&["account", "show", "-o", "yaml"]).err().map(|e| e.kind()),
            Some(ErrorKind::InvalidValue)
        );
    }

    #[test]
    fn resource_group_name_spellings() -> Result<(), clap::Error> {
        for args in [
            ["group", "show", "--resource-group", "rg"],
            ["group", "show", "-g", "rg"],
            ["group", "show", "--name", "rg"],
            ["group", "show", "-n", "rg"],
        ] {
            let cli = parse(&args)?;
            let Command::Group(ResourceGroupCommand::Show(a)) = cli.command else {
                return Err(clap::Error::new(ErrorKind::InvalidSubcommand));
            };
            assert_eq!(a.name, "rg");
        }
        let cli = parse(&[
            "group",
            "create",
            "-n",
            "rg",
            "-l",
            "westus",
            "--tags",
            "a=b",
            "c",
            "--subscription",
            "s",
        ])?;
        let Command::Group(ResourceGroupCommand::Create(a)) = cli.command else {
            return Err(clap::Error::new(ErrorKind::InvalidSubcommand));
        };
        assert_eq!(a.tags, Some(vec!["a=b".to_string(), "c".to_string()]));
        assert_eq!(a.subscription.subscription.as_deref(), Some("s"));
        let cli = parse(&["group", "delete", "-g", "rg", "-y"])?;
        let Command::Group(ResourceGroupCommand::Delete(a)) = cli.command else {
            return Err(clap::Error::new(ErrorKind::InvalidSubcommand));
        };
        assert!(a.yes);
        assert_eq!(a.group.name, "rg");
        Ok(())
    }

    #[test]
    fn role_assignment_options() -> Result<(), clap::Error> {
        let cli = parse(&[
            "role",
            "assignment",
            "create",
            "--role",
            "Virtual Machine Administrator Login",
            "--assignee-object-id",
            "o",
            "--assignee-principal-type",
            "serviceprincipal",
            "--scope",
            "/subscriptions/s",
        ])?;
        let Command::Role(RoleCommand::Assignment(RoleAssignmentCommand::Create(a))) = cli.command else {
            return Err(clap::Error::new(ErrorKind::InvalidSubcommand));
        };
        assert_eq!(a.assignee_principal_type, Some(PrincipalType::ServicePrincipal));
        assert_eq!(a.assignee, None);
        let kind = |args: &[&str]| parse(args).err().map(|e| e.kind());
        assert_eq!(
            kind(&["role", "assignment", "create", "--role", "r"]),
            Some(ErrorKind::MissingRequiredArgument)
        );
        assert_eq!(
            kind(&[
                "role",
                "assignment",
                "create",
                "--role",
                "r",
                "--assignee",
                "a",
                "--assignee-object-id",
                "o"
            ]),
            Some(ErrorKind::ArgumentConflict)
        );
        assert_eq!(
            kind(&[
                "role",
                "assignment",
                "list",
                "--all",
                "--scope",
                "/subscriptions/s"
            ]),
            Some(ErrorKind::ArgumentConflict)
        );
        let cli = parse(&["role", "assignment", "delete", "--ids", "a", "b"])?;
        let Command::Role(RoleCommand::Assignment(RoleAssignmentCommand::Delete(a))) = cli.command else {
            return Err(clap::Error::new(ErrorKind::InvalidSubcommand));
        };
        assert_eq!(a.ids, vec!["a", "b"]);
        Ok(())
    }

    #[test]
    fn every_command_and_option_has_help() {
        fn walk(cmd: &clap::Command, path: &str) -> Vec<String> {
            let mut missing = Vec::new();
            let here = format!("{path} {}", cmd.get_name());
            if cmd.get_about().is_none() && !path.is_empty() {
                missing.push(here.clone());
            }
            for arg in cmd.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() && !arg.is_positional() {
                    missing.push(format!("{here} --{}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_name() != "help" {
                    missing.extend(walk(sub, &here));
                }
            }
            missing
        }
        let missing = walk(&Cli::command(), "");
        assert!(missing.is_empty(), "without help: {missing:?}");
    }
}
