//! Users file with hashed passwords, through real HTTP.

use argon2::password_hash::{PasswordHasher, SaltString};
use reqwest::{Method, StatusCode};

use crate::helpers::spawn_app_with_users;

fn argon2_hash(password: &str) -> String {
    let params = argon2::Params::new(1024, 1, 1, None).expect("params");
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::encode_b64(b"it-test-salt-16b").expect("salt");
    argon
        .hash_password(password.as_bytes(), &salt)
        .expect("hash")
        .to_string()
}

#[tokio::test]
async fn hashed_passwords_authenticate_and_permissions_apply() {
    let bcrypt_hash = bcrypt::hash("qa-pass", 4).expect("bcrypt");
    let users = format!(
        r#"
[[users]]
username = "ops"
password_hash = '{}'
tenant = "default"
permissions = ["READ_TARGET"]

[[users]]
username = "qa"
password_hash = '{bcrypt_hash}'
tenant = "DEFAULT"
roles = ["ROLE_ROLLOUT_ADMIN"]
"#,
        argon2_hash("ops-pass")
    );
    let app = spawn_app_with_users(&users, &[]).await;

    // Twice: the second request takes the cached path.
    for _ in 0..2 {
        let (s, v) = app
            .api_as("ops", "ops-pass", Method::GET, "/targets", None)
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["total"], 0);
    }
    let (s, v) = app
        .api_as("ops", "wrong", Method::GET, "/targets", None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["errorCode"], "hawkbit.server.error.unauthorized");
    let (s, _) = app
        .api_as("qa", "ops-pass", Method::GET, "/targets", None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Right password, missing permission: 403 with hawkBit's body.
    let (s, v) = app
        .api_as("qa", "qa-pass", Method::GET, "/targets", None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(
        v["errorCode"],
        "hawkbit.server.error.insufficientPermission"
    );
    assert_eq!(
        v["exceptionClass"],
        "org.eclipse.hawkbit.repository.exception.InsufficientPermissionException"
    );
    assert!(
        v["message"].as_str().unwrap_or("").contains("READ_TARGET"),
        "{v}"
    );
    // ops may read but not create.
    let (s, v) = app
        .api_as(
            "ops",
            "ops-pass",
            Method::POST,
            "/targets",
            Some(serde_json::json!([{"controllerId": "dev-1"}])),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
}
