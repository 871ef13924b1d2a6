//! The tables, as diesel sees them. One schema for both backends: the migrations in
//! `migrations/postgres` and `migrations/sqlite` create the same columns with these types.

diesel::table! {
    municipalities (code) {
        code -> Text,
        name -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    areas (id) {
        id -> Text,
        municipality -> Text,
        code -> Text,
        name -> Text,
    }
}

diesel::table! {
    organisations (id) {
        id -> Text,
        name -> Text,
        kind -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    staff (id) {
        id -> Text,
        login -> Text,
        display_name -> Text,
        role -> Text,
        organisation_id -> Text,
        municipality -> Text,
        area -> Nullable<Text>,
        password_hash -> Text,
        active -> Bool,
        failed_logins -> Integer,
        locked_until -> Nullable<Timestamp>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    devices (id) {
        id -> Text,
        staff_id -> Text,
        label -> Text,
        registered_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
        sync_responses -> BigInt,
    }
}

diesel::table! {
    refresh_tokens (id) {
        id -> Text,
        device_id -> Text,
        family_id -> Text,
        token_hash -> Binary,
        issued_at -> Timestamp,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    documents (case_id) {
        case_id -> Text,
        municipality -> Text,
        heads -> Binary,
        snapshot -> Binary,
        snapshot_seq -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        clock -> BigInt,
    }
}

diesel::table! {
    changes (seq) {
        seq -> BigInt,
        case_id -> Text,
        hash -> Binary,
        bytes -> Binary,
        actor -> Binary,
        staff_id -> Nullable<Text>,
        device_id -> Nullable<Text>,
        received_at -> Timestamp,
        clock -> Nullable<BigInt>,
    }
}

diesel::table! {
    sync_clock (id) {
        id -> Integer,
        value -> BigInt,
    }
}

diesel::table! {
    case_number_counters (municipality, fiscal_year) {
        municipality -> Text,
        fiscal_year -> Integer,
        last_serial -> Integer,
    }
}

diesel::table! {
    cases (case_id) {
        case_id -> Text,
        municipality -> Text,
        case_number -> Nullable<Text>,
        status -> Text,
        consent -> Text,
        area -> Nullable<Text>,
        primary_assignee -> Nullable<Text>,
        opened_on -> Nullable<Text>,
        conflicts -> Integer,
        updated_at -> Timestamp,
        last_activity_at -> Nullable<Timestamp>,
        merged_into -> Nullable<Text>,
    }
}

diesel::table! {
    persons (case_id, person_id) {
        case_id -> Text,
        person_id -> Text,
        name -> Text,
        kana -> Nullable<Text>,
        birth_date -> Nullable<Text>,
        is_subject -> Bool,
    }
}

diesel::table! {
    activities (activity_id) {
        activity_id -> Text,
        case_id -> Text,
        kind -> Text,
        started_at -> Timestamp,
        recorded_by -> Text,
        device_id -> Text,
        place -> Text,
        outcome -> Nullable<Text>,
        follow_up_on -> Nullable<Text>,
        voided -> Bool,
        reviewed -> Bool,
        local_date -> Text,
        letter_left -> Bool,
        channel -> Nullable<Text>,
        agency -> Nullable<Text>,
        narrative -> Text,
        municipality -> Text,
        area -> Nullable<Text>,
    }
}

diesel::table! {
    activity_topics (activity_id, topic) {
        activity_id -> Text,
        case_id -> Text,
        topic -> Text,
    }
}

diesel::table! {
    activity_months (case_id, month, municipality) {
        case_id -> Text,
        month -> Text,
        municipality -> Text,
        consultations -> BigInt,
        visits -> BigInt,
        letters -> BigInt,
        contacts -> BigInt,
        met -> BigInt,
    }
}

diesel::table! {
    activity_month_topics (case_id, month, municipality, topic) {
        case_id -> Text,
        month -> Text,
        municipality -> Text,
        topic -> Text,
        n -> BigInt,
    }
}

diesel::table! {
    case_concerns (case_id, tag) {
        case_id -> Text,
        tag -> Text,
    }
}

diesel::table! {
    reviews (review_id) {
        review_id -> Text,
        case_id -> Text,
        activity_id -> Text,
        by_staff -> Text,
        at -> Timestamp,
        comment -> Text,
    }
}

diesel::table! {
    plans (plan_id) {
        plan_id -> Text,
        case_id -> Text,
        round -> Integer,
        author -> Text,
        drafted_on -> Text,
        period_until -> Nullable<Text>,
        next_monitoring_on -> Nullable<Text>,
    }
}

diesel::table! {
    evaluations (evaluation_id) {
        evaluation_id -> Text,
        case_id -> Text,
        round -> Integer,
        evaluator -> Text,
        evaluated_on -> Text,
        wish -> Nullable<Text>,
    }
}

diesel::table! {
    decisions (decision_id) {
        decision_id -> Text,
        case_id -> Text,
        meeting_on -> Text,
        verdict -> Text,
        referred_on -> Bool,
        decided_on -> Text,
    }
}

diesel::table! {
    referrals (decision_id, destination) {
        decision_id -> Text,
        case_id -> Text,
        municipality -> Text,
        destination -> Text,
        decided_on -> Text,
    }
}

diesel::table! {
    meetings (meeting_id) {
        meeting_id -> Text,
        municipality -> Text,
        kind -> Text,
        title -> Text,
        held_on -> Text,
        created_by -> Text,
        created_at -> Timestamp,
        ended_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    meeting_cases (meeting_id, case_id) {
        meeting_id -> Text,
        case_id -> Text,
    }
}

diesel::table! {
    meeting_members (meeting_id, staff_id) {
        meeting_id -> Text,
        staff_id -> Text,
    }
}

diesel::table! {
    assignments (case_id, staff_id) {
        case_id -> Text,
        staff_id -> Text,
        is_primary -> Bool,
    }
}

diesel::table! {
    device_cases (device_id, case_id) {
        device_id -> Text,
        case_id -> Text,
        sent_whole -> BigInt,
        purge_sent -> Nullable<BigInt>,
        synced_response -> BigInt,
        synced_clock -> BigInt,
    }
}

diesel::table! {
    audit_log (id) {
        id -> BigInt,
        at -> Timestamp,
        staff_id -> Nullable<Text>,
        device_id -> Nullable<Text>,
        case_id -> Nullable<Text>,
        action -> Text,
        detail -> Text,
    }
}

diesel::table! {
    quarantine (id) {
        id -> Text,
        received_at -> Timestamp,
        case_id -> Text,
        staff_id -> Text,
        device_id -> Text,
        code -> Text,
        violations -> Text,
        upload -> Binary,
        decided_at -> Nullable<Timestamp>,
        decision -> Nullable<Text>,
    }
}

diesel::table! {
    login_attempts (id) {
        id -> BigInt,
        login -> Text,
        attempted_at -> Timestamp,
    }
}

diesel::table! {
    attention (item_id) {
        item_id -> Text,
        municipality -> Text,
        case_id -> Text,
        kind -> Text,
        subject -> Text,
        detail -> Text,
        raised_at -> Timestamp,
        raised_by -> Nullable<Text>,
        resolved_at -> Nullable<Timestamp>,
        resolved_by -> Nullable<Text>,
        resolution -> Nullable<Text>,
    }
}

diesel::table! {
    case_redirects (case_id) {
        case_id -> Text,
        merged_into -> Text,
        municipality -> Text,
        case_number -> Nullable<Text>,
        merged_at -> Timestamp,
        merged_by -> Text,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    attention,
    case_redirects,
    municipalities,
    areas,
    organisations,
    staff,
    devices,
    refresh_tokens,
    documents,
    changes,
    sync_clock,
    case_number_counters,
    cases,
    persons,
    activities,
    assignments,
    device_cases,
    audit_log,
    quarantine,
    login_attempts,
    activity_topics,
    activity_months,
    activity_month_topics,
    case_concerns,
    reviews,
    plans,
    evaluations,
    decisions,
    referrals,
    meetings,
    meeting_cases,
    meeting_members,
);
