//! Directory behaviour against a real SQLite store with a controlled clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code")]

use std::sync::Arc;

use usher_core::{FixedClock, SystemRng, well_known};
use usher_crypto::at_rest::SealingKey;
use usher_directory::model::DirectoryObject;
use usher_directory::{BootstrapOptions, Directory, DirectoryError, NewUser, PasswordCheck, UserPatch};
use usher_store_sqlite::SqliteStore;

struct Env {
    dir: Directory,
    clock: Arc<FixedClock>,
    _tmp: tempfile::TempDir,
}

async fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&tmp.path().join("db")).await.unwrap());
    let clock = Arc::new(FixedClock::new(1_800_000_000));
    let (sealing, _) = SealingKey::generate(&SystemRng).unwrap();
    let dir = Directory::new(
        store,
        clock.clone(),
        Arc::new(SystemRng),
        Arc::new(sealing),
        Arc::from(&b"fp-key"[..]),
    );
    let report = dir
        .bootstrap(BootstrapOptions {
            domain: "contoso.test".into(),
            display_name: "Contoso".into(),
            admin_password: Some("Boot-strap-pass-42".to_owned().into()),
        })
        .await
        .unwrap();
    assert!(report.created);
    Env {
        dir,
        clock,
        _tmp: tmp,
    }
}

async fn user(dir: &Directory, upn: &str, pw: &str) -> usher_directory::model::User {
    dir.create_user(NewUser {
        user_principal_name: upn.into(),
        display_name: upn.into(),
        mail_nickname: None,
        password: pw.into(),
        force_change_password_next_sign_in: false,
        account_enabled: true,
    })
    .await
    .unwrap()
}

fn kind(c: &PasswordCheck) -> &'static str {
    match c {
        PasswordCheck::Valid(_) => "valid",
        PasswordCheck::Invalid => "invalid",
        PasswordCheck::Locked { .. } => "locked",
        PasswordCheck::Disabled(_) => "disabled",
        PasswordCheck::MustChange(_) => "mustchange",
    }
}

#[tokio::test]
async fn bootstrap_creates_admin_builtins_and_is_idempotent() {
    let e = env().await;
    let admin = e.dir.get_user("ADMIN@contoso.test").await.unwrap();
    assert!(
        admin
            .directory_roles
            .contains(&well_known::GLOBAL_ADMIN_ROLE.to_owned())
    );
    assert_eq!(
        kind(
            &e.dir
                .check_password("admin@contoso.test", "Boot-strap-pass-42")
                .await
                .unwrap()
        ),
        "valid"
    );
    for app_id in [
        well_known::VM_SIGN_IN_APP_ID,
        well_known::REMOTE_DESKTOP_APP_ID,
        well_known::CLI_APP_ID,
        well_known::DEVICE_REGISTRATION_APP_ID,
    ] {
        assert!(
            e.dir.find_service_principal(app_id).await.unwrap().is_some(),
            "{app_id}"
        );
    }
    let drs = e
        .dir
        .resolve_resource(well_known::DEVICE_REGISTRATION_URI)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(drs.app_id, well_known::DEVICE_REGISTRATION_APP_ID);
    let again = e
        .dir
        .bootstrap(BootstrapOptions {
            domain: "other.test".into(),
            display_name: "x".into(),
            admin_password: None,
        })
        .await
        .unwrap();
    assert!(!again.created);
    assert!(again.generated_password.is_none());
    assert_eq!(again.tenant.domains, vec!["contoso.test".to_owned()]);
}

#[tokio::test]
async fn a_deleted_builtin_is_recreated_by_app_id() {
    let e = env().await;
    e.dir
        .delete_application(well_known::VM_SIGN_IN_APP_ID)
        .await
        .unwrap();
    assert!(
        e.dir
            .find_service_principal(well_known::VM_SIGN_IN_APP_ID)
            .await
            .unwrap()
            .is_none()
    );
    let sp = e
        .dir
        .create_service_principal(well_known::VM_SIGN_IN_APP_ID)
        .await
        .unwrap();
    assert_eq!(sp.display_name, "Azure Windows VM Sign-In");
    assert!(matches!(
        e.dir
            .create_service_principal(well_known::VM_SIGN_IN_APP_ID)
            .await,
        Err(DirectoryError::AlreadyExists(_))
    ));
    assert!(matches!(
        e.dir
            .create_service_principal("11111111-2222-3333-4444-555555555555")
            .await,
        Err(DirectoryError::NotFound { .. })
    ));
}

#[tokio::test]
async fn user_creation_validates_and_refuses_duplicates() {
    let e = env().await;
    user(&e.dir, "ann@contoso.test", "long enough pw").await;
    let dup = e
        .dir
        .create_user(NewUser {
            user_principal_name: "ANN@contoso.test".into(),
            display_name: "x".into(),
            mail_nickname: None,
            password: "long enough pw".into(),
            force_change_password_next_sign_in: false,
            account_enabled: true,
        })
        .await;
    assert!(matches!(dup, Err(DirectoryError::AlreadyExists(_))), "{dup:?}");
    let mut bad = NewUser {
        user_principal_name: "bob@fabrikam.test".into(),
        display_name: "Bob".into(),
        mail_nickname: None,
        password: "long enough pw".into(),
        force_change_password_next_sign_in: false,
        account_enabled: true,
    };
    assert!(matches!(
        e.dir.create_user(bad.clone()).await,
        Err(DirectoryError::Invalid(_))
    ));
    bad.user_principal_name = "bob@contoso.test".into();
    bad.password = "P@ssw0rd1".into();
    assert!(matches!(
        e.dir.create_user(bad).await,
        Err(DirectoryError::PasswordPolicy(_))
    ));
    assert!(matches!(
        e.dir.get_user("bob@contoso.test").await,
        Err(DirectoryError::NotFound { .. })
    ));
}

#[tokio::test]
async fn disabled_temporary_and_expired_passwords() {
    let e = env().await;
    let u = user(&e.dir, "ann@contoso.test", "long enough pw").await;
    e.dir
        .update_user(
            &u.id,
            UserPatch {
                account_enabled: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        kind(
            &e.dir
                .check_password("ann@contoso.test", "long enough pw")
                .await
                .unwrap()
        ),
        "disabled"
    );
    assert_eq!(
        kind(
            &e.dir
                .check_password("ann@contoso.test", "wrong pw here")
                .await
                .unwrap()
        ),
        "invalid"
    );
    e.dir
        .update_user(
            &u.id,
            UserPatch {
                account_enabled: Some(true),
                password: Some("temporary pw 1".into()),
                force_change_password_next_sign_in: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        kind(
            &e.dir
                .check_password("ann@contoso.test", "temporary pw 1")
                .await
                .unwrap()
        ),
        "mustchange"
    );
    e.dir
        .change_own_password(&u.id, "temporary pw 1", "my own new pw")
        .await
        .unwrap();
    assert_eq!(
        kind(
            &e.dir
                .check_password("ann@contoso.test", "my own new pw")
                .await
                .unwrap()
        ),
        "valid"
    );
}

#[tokio::test]
async fn smart_lockout_follows_t5() {
    let e = env().await;
    user(&e.dir, "ann@contoso.test", "the right pw").await;
    let check = |pw: &'static str| {
        let d = e.dir.clone();
        async move { kind(&d.check_password("ann@contoso.test", pw).await.unwrap()) }
    };
    // Nine distinct failures, then a success resets the count.
    let wrong: Vec<String> = (0..130).map(|i| format!("wrong-{i}")).collect();
    for w in &wrong[..9] {
        assert_eq!(
            kind(&e.dir.check_password("ann@contoso.test", w).await.unwrap()),
            "invalid"
        );
    }
    assert_eq!(check("the right pw").await, "valid");
    // Repeating the same wrong password does not count again.
    for _ in 0..15 {
        assert_eq!(check("same-wrong").await, "invalid");
    }
    assert_eq!(check("the right pw").await, "valid");
    // The 10th consecutive distinct failure locks for 60 s.
    for w in &wrong[..10] {
        assert_eq!(
            kind(&e.dir.check_password("ann@contoso.test", w).await.unwrap()),
            "invalid"
        );
    }
    assert_eq!(
        check("the right pw").await,
        "locked",
        "locked: even the right password is refused"
    );
    for _ in 0..5 {
        assert_eq!(
            check("another-wrong").await,
            "locked",
            "attempts while locked are not counted"
        );
    }
    e.clock.advance(59);
    assert_eq!(check("the right pw").await, "locked");
    e.clock.advance(1);
    // Lock expired; 10 more failures lock again, now for 120 s.
    for w in &wrong[10..20] {
        assert_eq!(
            kind(&e.dir.check_password("ann@contoso.test", w).await.unwrap()),
            "invalid"
        );
    }
    e.clock.advance(61);
    assert_eq!(
        check("the right pw").await,
        "locked",
        "second lock lasts longer than 60 s"
    );
    e.clock.advance(60);
    assert_eq!(check("the right pw").await, "valid");
    // 100 consecutive failures lock until an admin unlocks.
    let mut i = 20;
    for _ in 0..100 {
        loop {
            let r = kind(
                &e.dir
                    .check_password("ann@contoso.test", &wrong[i % wrong.len()])
                    .await
                    .unwrap(),
            );
            i += 1;
            if r == "invalid" {
                break;
            }
            e.clock.advance(86_400);
        }
    }
    e.clock.advance(10 * 86_400);
    match e
        .dir
        .check_password("ann@contoso.test", "the right pw")
        .await
        .unwrap()
    {
        PasswordCheck::Locked { until: None } => {}
        other => panic!("expected a permanent lock, got {}", kind(&other)),
    }
    e.dir.unlock_user("ann@contoso.test").await.unwrap();
    assert_eq!(check("the right pw").await, "valid");
}

#[tokio::test]
async fn transitive_groups_and_loops() {
    let e = env().await;
    let ann = user(&e.dir, "ann@contoso.test", "long enough pw").await;
    let inner = e.dir.create_group("inner", None, None, true).await.unwrap();
    let outer = e.dir.create_group("outer", None, None, true).await.unwrap();
    e.dir.add_member(&inner.id, &ann.id).await.unwrap();
    e.dir.add_member(&outer.id, &inner.id).await.unwrap();
    let tm: Vec<String> = e
        .dir
        .transitive_members(&outer.id)
        .await
        .unwrap()
        .iter()
        .map(|o| o.id().to_owned())
        .collect();
    assert!(tm.contains(&ann.id) && tm.contains(&inner.id));
    let of: Vec<String> = e
        .dir
        .transitive_member_of(&ann.id)
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.id)
        .collect();
    assert_eq!(of.len(), 2);
    assert!(
        matches!(
            e.dir.add_member(&inner.id, &outer.id).await,
            Err(DirectoryError::Invalid(_))
        ),
        "loop refused"
    );
    assert!(matches!(
        e.dir.add_member(&inner.id, &ann.id).await,
        Err(DirectoryError::AlreadyExists(_))
    ));
    assert!(matches!(
        e.dir
            .add_member(&inner.id, "00000000-0000-0000-0000-000000000000")
            .await,
        Err(DirectoryError::NotFound { .. })
    ));
    e.dir.delete_user(&ann.id).await.unwrap();
    assert!(
        e.dir.get_group(&inner.id).await.unwrap().members.is_empty(),
        "deleting a user removes it from groups"
    );
    assert!(matches!(
        e.dir.get_object(&outer.id).await.unwrap(),
        DirectoryObject::Group(_)
    ));
}

#[tokio::test]
async fn totp_registration_and_replay() {
    let e = env().await;
    let ann = user(&e.dir, "ann@contoso.test", "long enough pw").await;
    let secret = usher_crypto::totp::generate_secret(&SystemRng);
    let now = 1_800_000_000;
    let code = usher_crypto::totp::code_at_step(&secret, usher_crypto::totp::step_of(now), 6);
    assert!(!e.dir.register_totp(&ann.id, &secret, "000000").await.unwrap() || code == "000000");
    assert!(e.dir.register_totp(&ann.id, &secret, &code).await.unwrap());
    assert!(
        e.dir.verify_totp(&ann.id, &code).await.unwrap() == usher_directory::TotpCheck::Invalid,
        "the registration code cannot be replayed"
    );
    e.clock.advance(30);
    let next = usher_crypto::totp::code_at_step(&secret, usher_crypto::totp::step_of(now + 30), 6);
    assert_eq!(
        e.dir.verify_totp(&ann.id, &next).await.unwrap(),
        usher_directory::TotpCheck::Valid
    );
    assert!(
        e.dir.verify_totp(&ann.id, &next).await.unwrap() == usher_directory::TotpCheck::Invalid,
        "a code is accepted once"
    );
    let stored = e.dir.get_user(&ann.id).await.unwrap();
    let sealed = stored.totp.unwrap().sealed_secret;
    assert!(
        !sealed.contains(&usher_crypto::totp::base32(&secret)),
        "the secret is sealed at rest"
    );
}

#[tokio::test]
async fn logs_are_readable_newest_first() {
    let e = env().await;
    for i in 0..3 {
        e.dir
            .log_sign_in(usher_directory::SignInEvent {
                user_principal_name: format!("u{i}"),
                ..Default::default()
            })
            .await;
    }
    let log = e.dir.read_log("signin", 10).await.unwrap();
    assert_eq!(log.len(), 3);
    assert_eq!(log[0]["userPrincipalName"], "u2");
    let audit = e.dir.read_log("audit", 10).await.unwrap();
    assert_eq!(audit[0]["activityDisplayName"], "Bootstrap tenant");
}

#[tokio::test]
async fn a_refused_bootstrap_password_writes_nothing_and_a_retry_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&tmp.path().join("db")).await.unwrap());
    let (sealing, _) = SealingKey::generate(&SystemRng).unwrap();
    let dir = Directory::new(
        store.clone(),
        Arc::new(FixedClock::new(1_800_000_000)),
        Arc::new(SystemRng),
        Arc::new(sealing),
        Arc::from(&b"k"[..]),
    );
    let weak = BootstrapOptions {
        domain: "contoso.test".into(),
        display_name: "C".into(),
        admin_password: Some("password".to_owned().into()),
    };
    assert!(
        matches!(dir.bootstrap(weak).await, Err(DirectoryError::Invalid(m)) if m.contains("USHER_BOOTSTRAP_PASSWORD"))
    );
    use usher_store::Store;
    assert!(
        store.list("tenant", None, 10, 0).await.unwrap().is_empty(),
        "nothing written"
    );
    let ok = BootstrapOptions {
        domain: "contoso.test".into(),
        display_name: "C".into(),
        admin_password: Some("Boot-strap-pass-42".to_owned().into()),
    };
    let r = dir.bootstrap(ok).await.unwrap();
    assert!(r.created && r.tenant.bootstrap_complete);
    assert_eq!(
        kind(
            &dir.check_password("admin@contoso.test", "Boot-strap-pass-42")
                .await
                .unwrap()
        ),
        "valid"
    );
}

#[tokio::test]
async fn an_expired_password_must_be_changed() {
    let e = env().await;
    user(&e.dir, "ann@contoso.test", "long enough pw").await;
    let policy = usher_core::PasswordPolicy {
        max_age_days: Some(1),
        ..Default::default()
    };
    e.dir
        .update_tenant_settings(Some(policy), None, None)
        .await
        .unwrap();
    assert_eq!(
        kind(
            &e.dir
                .check_password("ann@contoso.test", "long enough pw")
                .await
                .unwrap()
        ),
        "valid"
    );
    e.clock.advance(2 * 86_400);
    assert_eq!(
        kind(
            &e.dir
                .check_password("ann@contoso.test", "long enough pw")
                .await
                .unwrap()
        ),
        "mustchange"
    );
    let ann = e.dir.get_user("ann@contoso.test").await.unwrap();
    e.dir
        .change_own_password(&ann.id, "long enough pw", "a brand new one")
        .await
        .unwrap();
    assert_eq!(
        kind(
            &e.dir
                .check_password("ann@contoso.test", "a brand new one")
                .await
                .unwrap()
        ),
        "valid"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_cannot_outrun_the_lockout() {
    let e = env().await;
    user(&e.dir, "ann@contoso.test", "the right pw").await;
    // 40 different wrong passwords at once, then the right one in the same burst.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let d = e.dir.clone();
        tasks.push(tokio::spawn(async move {
            kind(
                &d.check_password("ann@contoso.test", &format!("guess-{i}"))
                    .await
                    .unwrap(),
            )
        }));
    }
    let d = e.dir.clone();
    tasks.push(tokio::spawn(async move {
        kind(
            &d.check_password("ann@contoso.test", "the right pw")
                .await
                .unwrap(),
        )
    }));
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let evaluated = results.iter().filter(|r| **r == "invalid").count();
    let valid = results.iter().filter(|r| **r == "valid").count();
    assert!(
        evaluated <= 10 + valid * 9,
        "at most the lock threshold is evaluated between resets: {results:?}"
    );
    // Whatever the interleaving, once ten failures landed the account is locked and stays locked.
    if evaluated >= 10 {
        assert_eq!(
            kind(
                &e.dir
                    .check_password("ann@contoso.test", "the right pw")
                    .await
                    .unwrap()
            ),
            "locked"
        );
    }
    // Attempts while locked were not counted: after the lock expires, one more failure does not lock again.
    e.clock.advance(61);
    assert_eq!(
        kind(
            &e.dir
                .check_password("ann@contoso.test", "one more wrong")
                .await
                .unwrap()
        ),
        "invalid"
    );
    assert_eq!(
        kind(
            &e.dir
                .check_password("ann@contoso.test", "the right pw")
                .await
                .unwrap()
        ),
        "valid"
    );
}

#[tokio::test]
async fn wrong_codes_count_toward_lockout_and_a_password_does_not_reset_them() {
    let e = env().await;
    let ann = user(&e.dir, "ann@contoso.test", "the right pw").await;
    e.dir
        .update_user(
            &ann.id,
            UserPatch {
                mfa_state: Some(usher_core::MfaState::Enforced),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let secret = usher_crypto::totp::generate_secret(&SystemRng);
    let now = 1_800_000_000;
    let code = usher_crypto::totp::code_at_step(&secret, usher_crypto::totp::step_of(now), 6);
    assert!(e.dir.register_totp(&ann.id, &secret, &code).await.unwrap());
    // An attacker with the password alternates: password (accepted), then wrong codes.
    let mut wrong = 0;
    for round in 0..4 {
        assert!(matches!(
            e.dir
                .check_password("ann@contoso.test", "the right pw")
                .await
                .unwrap(),
            PasswordCheck::Valid(_) | PasswordCheck::Locked { .. }
        ));
        for i in 0..4 {
            let guess = format!("{:06}", (round * 10 + i) * 7919 % 1_000_000);
            if guess != code {
                let r = e.dir.verify_totp(&ann.id, &guess).await.unwrap();
                if r == usher_directory::TotpCheck::Invalid {
                    wrong += 1;
                }
            }
        }
    }
    assert!(
        wrong <= 10,
        "no more than the threshold of codes is ever evaluated: {wrong}"
    );
    assert_eq!(
        e.dir.verify_totp(&ann.id, "123456").await.unwrap(),
        usher_directory::TotpCheck::Locked
    );
    assert_eq!(
        kind(
            &e.dir
                .check_password("ann@contoso.test", "the right pw")
                .await
                .unwrap()
        ),
        "locked"
    );
    // A second registration never replaces the first authenticator.
    let other = usher_crypto::totp::generate_secret(&SystemRng);
    e.clock.advance(3600);
    let c2 = usher_crypto::totp::code_at_step(&other, usher_crypto::totp::step_of(now + 3600), 6);
    assert!(!e.dir.register_totp(&ann.id, &other, &c2).await.unwrap());
}

#[tokio::test]
async fn a_resumed_first_start_reports_a_password_that_works() {
    let e = env().await;
    // Pretend the first start stopped after creating the admin: the tenant is not marked complete.
    let mut rec = e.dir.store().list("tenant", None, 1, 0).await.unwrap().remove(0);
    rec.data["bootstrapComplete"] = serde_json::json!(false);
    e.dir.store().update(rec).await.unwrap();
    let r = e
        .dir
        .bootstrap(BootstrapOptions {
            domain: "contoso.test".into(),
            display_name: "C".into(),
            admin_password: None,
        })
        .await
        .unwrap();
    assert!(r.created && r.tenant.bootstrap_complete);
    let generated = r.generated_password.unwrap();
    assert_eq!(
        kind(
            &e.dir
                .check_password("admin@contoso.test", &generated)
                .await
                .unwrap()
        ),
        "valid"
    );
    assert_eq!(
        e.dir.list_users().await.unwrap().len(),
        1,
        "no second administrator"
    );
}

#[tokio::test]
async fn posix_ids_are_stable_distinct_and_never_reused() {
    let e = env().await;
    let ann = user(&e.dir, "ann@contoso.test", "Sunny-garden-41").await;
    let bob = user(&e.dir, "bob@contoso.test", "Quiet-river-72").await;
    let a1 = e.dir.posix_id(&ann.id).await.unwrap();
    assert_eq!(
        a1,
        usher_directory::posix::UID_FIRST,
        "the range starts at 0x70000000"
    );
    assert_eq!(
        e.dir.posix_id(&ann.id.to_uppercase()).await.unwrap(),
        a1,
        "stable, ids compared case-insensitively"
    );
    let b1 = e.dir.posix_id(&bob.id).await.unwrap();
    assert_ne!(a1, b1);
    assert_eq!(
        e.dir.object_of_posix_id(b1).await.unwrap().as_deref(),
        Some(bob.id.as_str())
    );
    // A deleted user's number is never given to anyone else.
    e.dir.delete_user(&ann.id).await.unwrap();
    let carl = user(&e.dir, "carl@contoso.test", "Amber-meadow-93").await;
    let c1 = e.dir.posix_id(&carl.id).await.unwrap();
    assert!(c1 != a1 && c1 != b1, "{c1:#x}");
    assert_eq!(
        e.dir.object_of_posix_id(a1).await.unwrap().as_deref(),
        Some(ann.id.as_str())
    );
    // Many at once: all distinct, each object one number.
    let mut users = Vec::new();
    for i in 0..12 {
        users.push(
            user(&e.dir, &format!("u{i}@contoso.test"), "Long-enough-pass-1")
                .await
                .id,
        );
    }
    let handles: Vec<_> = users
        .iter()
        .flat_map(|u| [u.clone(), u.clone()])
        .map(|u| {
            let dir = e.dir.clone();
            tokio::spawn(async move { (u.clone(), dir.posix_id(&u).await.unwrap()) })
        })
        .collect();
    let mut by_user = std::collections::HashMap::new();
    for h in handles {
        let (u, uid) = h.await.unwrap();
        let prior = by_user.insert(u, uid);
        assert!(prior.is_none_or(|p| p == uid), "one object, one number");
    }
    let mut uids: Vec<u32> = by_user.values().copied().collect();
    uids.sort_unstable();
    uids.dedup();
    assert_eq!(uids.len(), 12, "distinct numbers");
    assert!(
        uids.iter()
            .all(|u| (usher_directory::posix::UID_FIRST..=usher_directory::posix::UID_LAST).contains(u))
    );
}
