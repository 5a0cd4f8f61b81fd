use super::*;

fn error(change: impl FnOnce(&mut Config)) -> ConfigError {
    let mut config = Config::default();
    change(&mut config);
    config.validate().expect_err("the change is invalid")
}

#[test]
fn the_defaults_are_valid() {
    Config::default().validate().unwrap();
    assert_eq!(
        Config::default().postgres.max_pending_per_session,
        Limits::default().max_pending_per_session
    );
}

#[test]
fn a_zero_bound_names_its_flag() {
    let e = error(|c| c.max_attempts = 0);
    assert_eq!(e.flag, "max-attempts");
    assert_eq!(
        e.to_string(),
        "invalid --max-attempts (ERRAND_MAX_ATTEMPTS): 0 is below the minimum, 1"
    );
    assert_eq!(error(|c| c.limits.stream_buffer = 0).flag, "stream-buffer");
    assert_eq!(
        error(|c| c.limits.stream_buffer_bytes = 0).flag,
        "stream-buffer-bytes"
    );
    assert_eq!(
        error(|c| c.limits.max_worker_concurrency = 0).flag,
        "max-worker-concurrency"
    );
    assert_eq!(
        error(|c| c.limits.max_result_bytes = 0).flag,
        "max-result-bytes"
    );
    assert_eq!(
        error(|c| c.postgres.pool_size = 1).to_string(),
        "invalid --database-pool-size (ERRAND_DATABASE_POOL_SIZE): 1 is below the minimum, 2"
    );
}

/// Issue 15.3: every accepted size fits the message that carries it.
#[test]
fn limits_that_cannot_add_up_name_the_flags_to_change() {
    let e = error(|c| c.limits.max_message_bytes = 1024 * 1024);
    assert_eq!(e.flag, "max-message-bytes");
    let text = e.to_string();
    assert!(
        text.contains("--max-result-bytes") && text.contains("at least"),
        "{text}"
    );
    let mut fits = Config::default();
    fits.limits.max_message_bytes = 1024 * 1024;
    fits.limits.max_result_bytes = 512 * 1024;
    fits.validate().unwrap();
    assert!(fits.largest_message() <= 1024 * 1024);
}

#[test]
fn result_budgets_are_bounded_and_the_default_is_one_a_submit_may_ask_for() {
    let e = error(|c| c.limits.result_budget_bytes = 10);
    assert_eq!(e.flag, "result-budget-bytes");
    assert!(e.problem.contains("minimum, 64"), "{e}");
    let e = error(|c| c.limits.max_result_budget_bytes = 0);
    assert_eq!(e.flag, "max-result-budget-bytes");
    let e = error(|c| {
        c.limits.result_budget_bytes = 4096;
        c.limits.max_result_budget_bytes = 1024;
    });
    assert_eq!(e.flag, "result-budget-bytes");
    assert!(e.problem.contains("--max-result-budget-bytes"), "{e}");
    // A budget above the message limit is valid: completions shrink
    // their preview to fit ([`crate::grpc::convert::streamed_completion`]).
    let mut c = Config::default();
    c.limits.result_budget_bytes = c.limits.max_message_bytes * 2;
    c.limits.max_result_budget_bytes = c.limits.max_message_bytes * 2;
    c.validate().unwrap();
}

#[test]
fn durations_must_be_positive_where_needed_and_bounded() {
    assert_eq!(
        error(|c| c.purge_interval = Duration::ZERO).to_string(),
        "invalid --purge-interval-ms (ERRAND_PURGE_INTERVAL_MS): must be more than 0"
    );
    assert_eq!(
        error(|c| c.register_timeout = Duration::ZERO).flag,
        "register-timeout-ms"
    );
    let e = error(|c| c.retention = MAX_DURATION + Duration::from_secs(1));
    assert_eq!(e.flag, "retention-secs");
    assert!(e.problem.contains("10 years"), "{e}");
    assert_eq!(
        error(|c| c.postgres.connect_timeout = Some(Duration::ZERO)).flag,
        "database-connect-timeout-ms"
    );
    // Zero retention (purge at once) and zero grace (stop at once) are
    // choices, not mistakes.
    let config = Config {
        retention: Duration::ZERO,
        shutdown_grace: Duration::ZERO,
        ..Config::default()
    };
    config.validate().unwrap();
}

#[test]
fn connection_bounds_are_checked() {
    assert_eq!(
        error(|c| c.connections.max_connections_per_peer = 0).to_string(),
        "invalid --max-connections-per-peer (ERRAND_MAX_CONNECTIONS_PER_PEER): 0 is below the minimum, 1"
    );
    assert_eq!(
        error(|c| c.connections.max_concurrent_streams = 0).flag,
        "max-concurrent-streams"
    );
    assert_eq!(
        error(|c| c.connections.stream_window_bytes = 1000).flag,
        "stream-window-bytes"
    );
    let e = error(|c| c.connections.connection_window_bytes = u32::MAX);
    assert_eq!(e.flag, "connection-window-bytes");
    assert!(e.problem.contains("largest window"), "{e}");
    assert_eq!(
        error(|c| c.connections.handshake_timeout = Duration::ZERO).flag,
        "handshake-timeout-ms"
    );
    assert_eq!(
        error(|c| c.connections.max_header_list_bytes = 100).flag,
        "max-header-list-bytes"
    );
}

#[test]
fn a_short_lease_and_a_default_over_the_maximum_are_refused() {
    let e = error(|c| c.postgres.lease = Duration::from_millis(299));
    assert_eq!(
        e.to_string(),
        "invalid --lease-ms (ERRAND_LEASE_MS): 299 ms is under the shortest lease, 300 ms"
    );
    let e = error(|c| c.default_timeout = c.limits.max_timeout + Duration::from_millis(1));
    assert_eq!(e.flag, "default-timeout-ms");
    assert!(e.problem.contains("--max-timeout-ms"), "{e}");
    // The queue timeout's default by the same rule (it was accepted).
    let e = error(|c| c.default_queue_timeout = c.limits.max_timeout + Duration::from_millis(1));
    assert_eq!(e.flag, "default-queue-timeout-ms");
    assert!(e.problem.contains("--max-timeout-ms"), "{e}");
}

/// The largest message counts every field the limits let grow: a task's
/// session ID and idempotency key too. Limits that let a task outgrow the
/// message limit were accepted, and its GetTask failed RESOURCE_EXHAUSTED.
#[test]
fn the_largest_message_counts_session_ids_and_keys() {
    let mut c = Config::default();
    let before = c.largest_message();
    c.limits.max_session_id_bytes = 3_000_000;
    c.limits.max_idempotency_key_bytes = 3_000_000;
    assert_eq!(c.largest_message(), before + 6_000_000 - 256);
    let e = c.validate().expect_err("the IDs do not fit");
    assert_eq!(e.flag, "max-message-bytes");
    assert!(e.problem.contains("--max-session-id-bytes 3000000"), "{e}");
    let e = error(|c| c.limits.max_message_bytes = usize::MAX);
    assert_eq!(e.flag, "max-message-bytes");
    assert!(e.problem.contains("1 GiB"), "{e}");
}

#[test]
fn registry_bounds_must_fit_together() {
    let e = error(|c| c.limits.max_tools_per_tenant = c.limits.max_tools_per_worker - 1);
    assert_eq!(e.flag, "max-tools-per-tenant");
    assert!(e.problem.contains("--max-tools-per-worker"), "{e}");
    assert_eq!(
        error(|c| c.tool_retention = Duration::ZERO).to_string(),
        "invalid --tool-retention-secs (ERRAND_TOOL_RETENTION_SECS): must be more than 0"
    );
}

#[test]
fn the_a2a_public_url_is_a_base_url() {
    for good in ["http://127.0.0.1:7000", "https://agents.example.com/"] {
        let mut c = Config::default();
        c.a2a.public_url = Some(good.into());
        c.validate().unwrap();
    }
    for bad in ["agents.example.com", "http://", "https://h/a2a", "ftp://h"] {
        let e = error(|c| c.a2a.public_url = Some(bad.into()));
        assert_eq!(e.flag, "a2a-public-url", "{bad}");
    }
}

#[test]
fn the_store_enforces_the_session_bound_of_the_limits() {
    let mut config = Config::default();
    config.limits.max_pending_per_session = 7;
    assert_eq!(config.postgres_options().max_pending_per_session, 7);
}

/// "A thing accepted can always be delivered": a task and a completion
/// with every field at the largest the limits accept fit
/// [`Config::largest_message`], the size `--max-message-bytes` is checked
/// against. Trial finding: a fallback's primary_error was left out, and a
/// task answered by a fallback after a full-budget failure (8.65 MB) could
/// not be read with GetTask nor paged past in ListTasks.
#[test]
fn the_largest_message_holds_a_task_and_a_completion_with_every_field_full() {
    // Small limits still add up: a 64 KiB message, 16 KiB arguments and
    // results (the failure's own bound is well under them).
    let mut small = Config::default();
    small.limits.max_message_bytes = 64 * 1024;
    small.limits.max_arguments_bytes = 16 * 1024;
    small.limits.max_result_bytes = 16 * 1024;
    small.validate().unwrap();
    for c in [Config::default(), small] {
        every_field_full_fits(&c);
    }
}

fn every_field_full_fits(c: &Config) {
    use errand_proto::v1 as pb;
    use prost::Message;
    let l = &c.limits;
    let s = |n: usize| "x".repeat(n);
    let id = || uuid::Uuid::nil().to_string();
    let name = || s(64);
    let time = || Some(prost_types::Timestamp::default());
    let error = || pb::ToolError {
        code: s(crate::fields::MAX_ERROR_CODE_BYTES),
        message: s(crate::fields::MAX_ERROR_MESSAGE_BYTES),
    };
    let fallback = || {
        Some(pb::FallbackUsed {
            primary_status: 6,
            primary_error: Some(error()),
            tool: name(),
            last_good_age_ms: u64::MAX,
            task_id: id(),
        })
    };
    let task = pb::Task {
        task_id: id(),
        session_id: s(l.max_session_id_bytes),
        tool: name(),
        arguments_json: s(l.max_arguments_bytes),
        status: 6,
        outcome: Some(pb::task::Outcome::ResultJson(s(l.max_result_bytes))),
        attempts: u32::MAX,
        created_at: time(),
        started_at: time(),
        finished_at: time(),
        timeout_ms: u64::MAX,
        seq: u64::MAX,
        elapsed_ms: u64::MAX,
        idempotency_key: s(l.max_idempotency_key_bytes),
        worker_id: u64::MAX.to_string(),
        worker_name: s(crate::fields::MAX_WORKER_NAME_BYTES),
        retry_of: id(),
        delivery: 3,
        // Not counted: a running task's progress (see largest_message).
        progress: None,
        fallback: fallback(),
    };
    // In a listing: a tag and a length more.
    let listed = pb::ListTasksResponse {
        tasks: vec![task],
        next_page_token: s(256),
        total_size: u64::MAX,
    };
    assert!(
        listed.encoded_len() <= c.largest_message(),
        "a task page of one is {} bytes, the largest message counted {}",
        listed.encoded_len(),
        c.largest_message()
    );
    let completion = pb::Completion {
        seq: u64::MAX,
        task_id: id(),
        session_id: s(l.max_session_id_bytes),
        tool: name(),
        arguments_json: s(l.max_arguments_bytes),
        status: 6,
        outcome: Some(pb::completion::Outcome::ResultJson(s(l.max_result_bytes))),
        elapsed_ms: u64::MAX,
        attempts: u32::MAX,
        // The result quoted, and the fallback's clause quoting the
        // primary's message within 1 KiB, with errand's words around them.
        message: s(l.max_result_bytes.min(crate::text::MAX_QUOTED_BYTES) + 1024 + 3 * 1024),
        completed_at: time(),
        delivery: 3,
        result_truncated: false,
        result_bytes: u64::MAX,
        result_preview: String::new(),
        fallback: fallback(),
    };
    let event = pb::SessionEvent {
        event: Some(pb::session_event::Event::Completion(completion)),
    };
    assert!(
        event.encoded_len() <= c.largest_message(),
        "a completion is {} bytes, the largest message counted {}",
        event.encoded_len(),
        c.largest_message()
    );
}

#[test]
fn the_pending_bytes_per_tenant_hold_at_least_the_largest_arguments() {
    let e = error(|c| c.limits.max_pending_bytes_per_tenant = 0);
    assert_eq!(e.flag, "max-pending-bytes-per-tenant");
    let e = error(|c| {
        c.limits.max_arguments_bytes = 4096;
        c.limits.max_pending_bytes_per_tenant = 4095;
    });
    assert_eq!(e.flag, "max-pending-bytes-per-tenant");
    assert!(e.problem.contains("--max-arguments-bytes (4096)"), "{e}");
    let mut c = Config::default();
    c.limits.max_arguments_bytes = 4096;
    c.limits.max_pending_bytes_per_tenant = 4096;
    c.validate().unwrap();
}
