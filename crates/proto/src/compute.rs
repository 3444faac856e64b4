//! Compute catalogue: the image aliases `usher vm create --image` accepts and the VM extensions
//! usher's agent runs (SPEC A2, A3).

/// A marketplace image an alias stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageAlias {
    /// What `--image` accepts (case-insensitive).
    pub alias: &'static str,
    /// `imageReference.publisher`.
    pub publisher: &'static str,
    /// `imageReference.offer`.
    pub offer: &'static str,
    /// `imageReference.sku`.
    pub sku: &'static str,
    /// `Linux` or `Windows`.
    pub os_type: &'static str,
    /// The operating system's name, for the instance view.
    pub os_name: &'static str,
}

const fn image(
    alias: &'static str,
    publisher: &'static str,
    offer: &'static str,
    sku: &'static str,
    os_type: &'static str,
    os_name: &'static str,
) -> ImageAlias {
    ImageAlias {
        alias,
        publisher,
        offer,
        sku,
        os_type,
        os_name,
    }
}

/// The image aliases, with the image references the Azure CLI gives them.
pub const IMAGE_ALIASES: &[ImageAlias] = &[
    image(
        "Debian11",
        "Debian",
        "debian-11",
        "11-backports-gen2",
        "Linux",
        "debian 11",
    ),
    image("Debian12", "Debian", "debian-12", "12-gen2", "Linux", "debian 12"),
    image(
        "Ubuntu2204",
        "Canonical",
        "0001-com-ubuntu-server-jammy",
        "22_04-lts-gen2",
        "Linux",
        "ubuntu 22.04",
    ),
    image(
        "Ubuntu2404",
        "Canonical",
        "ubuntu-24_04-lts",
        "server",
        "Linux",
        "ubuntu 24.04",
    ),
    image(
        "Win2019Datacenter",
        "MicrosoftWindowsServer",
        "WindowsServer",
        "2019-Datacenter",
        "Windows",
        "Windows Server 2019 Datacenter",
    ),
    image(
        "Win2022Datacenter",
        "MicrosoftWindowsServer",
        "WindowsServer",
        "2022-datacenter-azure-edition",
        "Windows",
        "Windows Server 2022 Datacenter",
    ),
];

/// The alias `name` (case-insensitive).
pub fn image_alias(name: &str) -> Option<&'static ImageAlias> {
    IMAGE_ALIASES.iter().find(|i| i.alias.eq_ignore_ascii_case(name))
}

/// The alias whose image reference this is (case-insensitive; any version).
pub fn image_by_reference(publisher: &str, offer: &str, sku: &str) -> Option<&'static ImageAlias> {
    IMAGE_ALIASES.iter().find(|i| {
        i.publisher.eq_ignore_ascii_case(publisher)
            && i.offer.eq_ignore_ascii_case(offer)
            && i.sku.eq_ignore_ascii_case(sku)
    })
}

/// The publisher of usher's login extension.
pub const LOGIN_EXTENSION_PUBLISHER: &str = "Usher.Identity";
/// usher's Linux login extension (SSH, and RDP through xrdp): its canonical name.
pub const LINUX_LOGIN_EXTENSION: &str = "LoginForLinux";
/// The publisher of Azure's login extensions, accepted as aliases.
pub const AZURE_LOGIN_EXTENSION_PUBLISHER: &str = "Microsoft.Azure.ActiveDirectory";
/// Azure's Linux login extension, an alias of [`LINUX_LOGIN_EXTENSION`].
pub const AZURE_LINUX_LOGIN_EXTENSION: &str = "AADSSHLoginForLinux";
/// Azure's Windows login extension; usher's agent runs the Linux handler for it, which refuses a
/// Linux machine with the seed's exit code 51 (the extension is for another operating system).
pub const WINDOWS_LOGIN_EXTENSION: &str = "AADLoginForWindows";

/// An extension type usher's agent runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtensionType {
    /// Publisher.
    pub publisher: &'static str,
    /// Type.
    pub type_name: &'static str,
    /// Versions offered, oldest first.
    pub versions: &'static [&'static str],
    /// The handler that runs it, as `publisher.type` (logs live under this name).
    pub canonical: &'static str,
    /// The operating system the handler is for.
    pub os_type: &'static str,
}

/// The canonical name of the Linux login handler.
pub const LINUX_LOGIN_CANONICAL: &str = "Usher.Identity.LoginForLinux";

/// Every extension type usher runs. The legacy Linux names are accepted and run the same handler.
pub const EXTENSION_TYPES: &[ExtensionType] = &[
    ExtensionType {
        publisher: LOGIN_EXTENSION_PUBLISHER,
        type_name: LINUX_LOGIN_EXTENSION,
        versions: &["1.0.0.0"],
        canonical: LINUX_LOGIN_CANONICAL,
        os_type: "Linux",
    },
    ExtensionType {
        publisher: AZURE_LOGIN_EXTENSION_PUBLISHER,
        type_name: AZURE_LINUX_LOGIN_EXTENSION,
        versions: &["1.0.0.0"],
        canonical: LINUX_LOGIN_CANONICAL,
        os_type: "Linux",
    },
    ExtensionType {
        publisher: AZURE_LOGIN_EXTENSION_PUBLISHER,
        type_name: WINDOWS_LOGIN_EXTENSION,
        versions: &["1.0.0.0", "2.2.0.0"],
        canonical: LINUX_LOGIN_CANONICAL,
        os_type: "Windows",
    },
    ExtensionType {
        publisher: AZURE_LOGIN_EXTENSION_PUBLISHER,
        type_name: "AADLoginForLinux",
        versions: &["1.0.0.0"],
        canonical: LINUX_LOGIN_CANONICAL,
        os_type: "Linux",
    },
    ExtensionType {
        publisher: "Microsoft.Azure.ActiveDirectory.LinuxSSH",
        type_name: "AADLoginForLinux",
        versions: &["1.0.0.0"],
        canonical: LINUX_LOGIN_CANONICAL,
        os_type: "Linux",
    },
];

/// The extension type `publisher`/`type_name` (case-insensitive).
pub fn extension_type(publisher: &str, type_name: &str) -> Option<&'static ExtensionType> {
    EXTENSION_TYPES
        .iter()
        .find(|t| t.publisher.eq_ignore_ascii_case(publisher) && t.type_name.eq_ignore_ascii_case(type_name))
}

/// The login extension (publisher, type) for an operating system type (`Linux` or `Windows`).
pub fn login_extension_for(os_type: &str) -> (&'static str, &'static str) {
    if os_type.eq_ignore_ascii_case("Windows") {
        (AZURE_LOGIN_EXTENSION_PUBLISHER, WINDOWS_LOGIN_EXTENSION)
    } else {
        (LOGIN_EXTENSION_PUBLISHER, LINUX_LOGIN_EXTENSION)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_lookups() {
        for alias in [
            "Debian11",
            "debian12",
            "UBUNTU2204",
            "Ubuntu2404",
            "Win2019Datacenter",
        ] {
            assert!(image_alias(alias).is_some(), "{alias}");
        }
        assert_eq!(
            image_alias("win2019datacenter").map(|i| i.os_type),
            Some("Windows")
        );
        assert!(image_alias("CentOS").is_none());
        assert_eq!(
            image_by_reference("debian", "DEBIAN-12", "12-gen2").map(|i| i.alias),
            Some("Debian12")
        );
        assert_eq!(
            extension_type("microsoft.azure.activedirectory", "aadsshloginforlinux").map(|t| t.canonical),
            Some(LINUX_LOGIN_CANONICAL)
        );
        assert_eq!(
            extension_type("Usher.Identity", "LoginForLinux").map(|t| t.os_type),
            Some("Linux")
        );
        assert!(extension_type("Microsoft.Azure.Extensions", "CustomScript").is_none());
        assert_eq!(login_extension_for("Windows").1, WINDOWS_LOGIN_EXTENSION);
        assert_eq!(login_extension_for("Linux"), ("Usher.Identity", "LoginForLinux"));
    }
}
