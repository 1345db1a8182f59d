// @generated automatically by Diesel CLI.

diesel::table! {
    access_tokens (id) {
        id -> Int4,
        user_id -> Int4,
        #[max_length = 100]
        name -> Varchar,
        #[max_length = 64]
        token_hash -> Varchar,
        created_at -> Timestamp,
        last_used_at -> Nullable<Timestamp>,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    audit_events (id) {
        id -> Int8,
        at -> Timestamp,
        #[max_length = 32]
        event -> Varchar,
        user_id -> Nullable<Int4>,
        #[max_length = 50]
        username -> Nullable<Varchar>,
        client_ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        detail -> Nullable<Text>,
    }
}

diesel::table! {
    event_acks (event_id, instance_id) {
        event_id -> Int8,
        #[max_length = 32]
        instance_id -> Varchar,
    }
}

diesel::table! {
    instances (id) {
        #[max_length = 32]
        id -> Varchar,
        lease_until -> Timestamp,
    }
}

diesel::table! {
    login_failures (id) {
        id -> Int8,
        at -> Timestamp,
        username -> Text,
        client_ip -> Text,
        #[max_length = 64]
        device -> Nullable<Varchar>,
    }
}

diesel::table! {
    recovery_codes (id) {
        id -> Int4,
        user_id -> Int4,
        #[max_length = 64]
        code_hash -> Varchar,
        created_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    second_factors (id) {
        id -> Int4,
        user_id -> Int4,
        #[max_length = 16]
        kind -> Varchar,
        #[max_length = 100]
        name -> Varchar,
        secret -> Text,
        last_step -> Nullable<Int8>,
        created_at -> Timestamp,
        last_used_at -> Nullable<Timestamp>,
        credential_id -> Nullable<Text>,
    }
}

diesel::table! {
    session_events (id) {
        id -> Int8,
        at -> Timestamp,
        #[max_length = 64]
        key_hash -> Nullable<Varchar>,
        user_id -> Nullable<Int4>,
    }
}

diesel::table! {
    sessions (key_hash) {
        #[max_length = 64]
        key_hash -> Varchar,
        #[max_length = 32]
        public_id -> Varchar,
        user_id -> Nullable<Int4>,
        state -> Text,
        created_at -> Timestamp,
        last_seen_at -> Timestamp,
        expires_at -> Timestamp,
        absolute_expires_at -> Timestamp,
        ttl_seconds -> Int8,
        client_ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
    }
}

diesel::table! {
    used_challenges (challenge_hash) {
        #[max_length = 64]
        challenge_hash -> Varchar,
        used_at -> Timestamp,
    }
}

diesel::table! {
    users (id) {
        id -> Int4,
        #[max_length = 50]
        username -> Varchar,
        password_hash -> Text,
        is_active -> Bool,
        created_at -> Timestamp,
        last_login_at -> Nullable<Timestamp>,
        username_folded -> Nullable<Text>,
    }
}

diesel::table! {
    welcome_links (id) {
        id -> Int4,
        user_id -> Int4,
        #[max_length = 64]
        token_hash -> Varchar,
        #[max_length = 16]
        purpose -> Varchar,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
    }
}

diesel::joinable!(access_tokens -> users (user_id));
diesel::joinable!(audit_events -> users (user_id));
diesel::joinable!(recovery_codes -> users (user_id));
diesel::joinable!(second_factors -> users (user_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(welcome_links -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    access_tokens,
    audit_events,
    event_acks,
    instances,
    login_failures,
    recovery_codes,
    second_factors,
    session_events,
    sessions,
    used_challenges,
    users,
    welcome_links,
);
