//! The Mayastor REST client against the stateful simulator (and a fixed-answer
//! server) over real HTTP on 127.0.0.1 — no real Mayastor runs here: it needs SPDK and
//! hugepages. Listing, lenient parsing, errors with the server's kind/message/status,
//! injected faults, pool labels, cordons and their fallback. Every test asserts on what
//! the client got back, on the requests the simulator received and on its state.

#[path = "support/mayastor.rs"]
mod support;

use std::time::Duration;

use couchestor_operator::mayastor::{
    Config, Error, Mayastor, PoolCordon, ReplicaState, Steering, VolumeStatus,
    sim::{Behaviour, Fault, Sim, VolumeSetup},
};
use hyper::Method;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn listing_reads_every_volume_page_pool_node_and_replica_over_http() {
    let mut cluster = two_tier(Behaviour::default());
    for i in 0..4 {
        cluster
            .add_volume(VolumeSetup {
                uuid: format!("00000000-0000-4000-8000-0000000000a{i}"),
                size: GIB,
                thin: true,
                inclusion: tiered_inclusion(),
                target: None,
                pools: vec!["n3-cold".to_owned()],
            })
            .expect("volume");
    }
    let sim = Sim::start(cluster).await.expect("simulator");
    let mut config = Config::new(sim.url());
    config.page_size = 2;
    let client = Mayastor::new(config).expect("client");

    let volumes = client.volumes().await.expect("volumes");
    assert_eq!(volumes.len(), 5);
    let paths: Vec<String> = sim.log().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            "/v0/volumes?max_entries=2",
            "/v0/volumes?max_entries=2&starting_token=2",
            "/v0/volumes?max_entries=2&starting_token=4",
        ],
        "followed next_token across pages"
    );
    let vol = volumes
        .iter()
        .find(|v| v.uuid() == VOL)
        .expect("VOL listed");
    assert_eq!(pools_of(vol), ["n1-hot", "n2-hot"]);
    assert_eq!(vol.state.status, VolumeStatus::Online);
    assert_eq!(vol.state.target.as_ref().map(|t| t.children.len()), Some(2));

    let pools = client.pools().await.expect("pools");
    assert_eq!(pools.len(), 4);
    let cold = pools.iter().find(|p| p.id == "n3-cold").expect("n3-cold");
    assert_eq!(cold.labels()["tier"], "cold");
    assert_eq!(cold.node(), "n3");
    assert_eq!(cold.state.as_ref().map(|s| s.capacity), Some(100 * GIB));
    assert_eq!(cold.state.as_ref().map(|s| s.used), Some(4 * GIB));
    assert_eq!(client.pool("n1-hot").await.expect("pool").free(), 90 * GIB);

    let nodes = client.nodes().await.expect("nodes");
    assert_eq!(
        nodes.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(),
        ["n1", "n2", "n3", "n4"]
    );
    assert_eq!(client.node("n2").await.expect("node").id, "n2");
    let replicas = client.replicas().await.expect("replicas");
    assert_eq!(replicas.len(), 6);
    assert!(replicas.iter().all(|r| r.state == ReplicaState::Online));
}

/// Serves one fixed answer to every request.
async fn fixed_server(status: &'static str, body: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = socket.read(&mut buf).await;
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_body_with_extra_null_and_missing_fields_still_parses_over_http() {
    let url = fixed_server(
        "200 OK",
        r#"{"spec": {"uuid": "u-1", "num_replicas": 2, "labels": null, "brand_new": {"x": 1}},
            "state": {"status": "Online", "usage": null,
                      "replica_topology": {"r1": {"node": "a", "pool": "p", "state": "Online", "future": true},
                                           "r2": {"state": "Online"}}},
            "metadata": {"generation": 7}}"#,
    )
    .await;
    let client = Mayastor::new(Config::new(url)).expect("client");
    let v = client.volume("u-1").await.expect("lenient parse");
    assert_eq!(v.uuid(), "u-1");
    assert_eq!(v.spec.num_replicas, 2);
    assert!(v.state.target.is_none());
    assert_eq!(
        v.healthy_replicas().count(),
        2,
        "no child-status: not published"
    );
    assert_eq!(v.state.replica_topology["r2"].pool, None);
}

#[tokio::test]
async fn an_answer_that_is_not_the_expected_shape_is_a_malformed_error() {
    let url = fixed_server("200 OK", r#"{"entries": "not a list"}"#).await;
    let client = Mayastor::new(Config::new(url)).expect("client");
    let err = client.volumes().await.expect_err("malformed");
    assert!(matches!(err, Error::Malformed { .. }), "{err}");
    assert!(
        err.to_string().contains("GET /v0/volumes?max_entries=0"),
        "{err}"
    );
}

#[tokio::test]
async fn replica_count_rules_refuse_with_the_servers_kind_and_status() {
    let (sim, client) = start(two_tier(Behaviour::default())).await;
    let same = client
        .set_replica_count(VOL, 2)
        .await
        .expect_err("same count");
    assert_eq!(
        (same.status(), same.kind()),
        (Some(412), Some("FailedPrecondition"))
    );
    let jump = client.set_replica_count(VOL, 4).await.expect_err("+2");
    assert_eq!(
        (jump.status(), jump.kind()),
        (Some(412), Some("FailedPrecondition"))
    );
    let missing = client.volume("no-such-volume").await.expect_err("absent");
    assert_eq!(
        (missing.status(), missing.kind()),
        (Some(404), Some("NotFound"))
    );
    let Error::Api(api) = &missing else {
        panic!("an API error: {missing}")
    };
    let (request, message, details) = (&api.request, &api.message, &api.details);
    assert_eq!(request.method, Method::GET);
    assert_eq!(request.path, "/v0/volumes/no-such-volume");
    assert!(
        !message.is_empty() && details.contains("no-such-volume"),
        "{missing}"
    );
    assert!(
        missing
            .to_string()
            .contains("GET /v0/volumes/no-such-volume"),
        "{missing}"
    );

    // While a rebuild runs the volume is Degraded: no second replica may be added.
    client.set_replica_count(VOL, 3).await.expect("+1");
    let busy = client
        .set_replica_count(VOL, 4)
        .await
        .expect_err("degraded");
    assert_eq!(
        (busy.status(), busy.kind()),
        (Some(412), Some("FailedPrecondition"))
    );
    assert!(busy.to_string().contains("Degraded"), "{busy}");
    assert_eq!(sim.with(|c| c.num_replicas(VOL)), Some(3));
}

#[tokio::test]
async fn injected_5xx_reach_the_client_as_transient_errors_with_details_then_stop() {
    let (sim, client) = start(two_tier(Behaviour::default())).await;
    sim.inject(Fault::fail_next(2, 503));
    for _ in 0..2 {
        let err = client.volume(VOL).await.expect_err("injected");
        assert_eq!((err.status(), err.kind()), (Some(503), Some("Unavailable")));
        assert!(err.is_transient());
        assert!(err.to_string().contains("injected fault"), "{err}");
    }
    client.volume(VOL).await.expect("the fault is used up");
    let statuses: Vec<u16> = sim.log().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 503, 200]);
}

#[tokio::test]
async fn a_fault_on_one_path_leaves_other_paths_alone() {
    let (sim, client) = start(two_tier(Behaviour::default())).await;
    sim.inject(Fault::fail_next(1, 500).on(Method::PUT, "/v0/volumes/"));
    client.volume(VOL).await.expect("GET unaffected");
    let err = client
        .set_replica_count(VOL, 3)
        .await
        .expect_err("PUT fails");
    assert_eq!((err.status(), err.kind()), (Some(500), Some("Internal")));
    assert_eq!(sim.with(|c| c.num_replicas(VOL)), Some(2), "not applied");
}

#[tokio::test]
async fn a_lost_reply_still_changes_the_volume() {
    let (sim, client) = start(two_tier(Behaviour::default())).await;
    sim.inject(
        Fault::fail_next(1, 502)
            .on(Method::PUT, "/v0/volumes/")
            .after_apply(),
    );
    let err = client
        .set_replica_count(VOL, 3)
        .await
        .expect_err("reply lost");
    assert_eq!(err.status(), Some(502));
    assert_eq!(
        sim.with(|c| c.num_replicas(VOL)),
        Some(3),
        "applied all the same"
    );
    assert_eq!(
        client.volume(VOL).await.expect("volume").spec.num_replicas,
        3
    );
}

#[tokio::test]
async fn a_slow_answer_is_a_timeout_while_the_request_is_still_carried_out() {
    let sim = Sim::start(two_tier(Behaviour::default()))
        .await
        .expect("simulator");
    sim.inject(Fault::slow(
        Some(Method::PUT),
        "/v0/volumes/",
        Duration::from_secs(3),
    ));
    let mut config = Config::new(sim.url());
    config.timeout = Duration::from_secs(1);
    let client = Mayastor::new(config).expect("client");
    let err = client
        .set_replica_count(VOL, 3)
        .await
        .expect_err("too slow");
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(err.is_transient());
    assert!(err.to_string().contains("replica_count/3"), "{err}");
    client.volume(VOL).await.expect("GET is not slowed");
    // A timeout does not mean "not done": the server finishes the request.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while sim.with(|c| c.num_replicas(VOL)) != Some(3) {
        assert!(
            std::time::Instant::now() < deadline,
            "the slow request never landed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn pool_labels_round_trip_over_the_wire_with_encoded_keys() {
    let (sim, client) = start(two_tier(Behaviour::default())).await;
    let pool = client
        .put_pool_label("n3-cold", "couchestor.io/steer", "move-1", false)
        .await
        .expect("label");
    assert_eq!(pool.labels()["couchestor.io/steer"], "move-1");
    assert_eq!(
        sim.mutations()[0].path,
        "/v0/pools/n3-cold/label/couchestor.io%2Fsteer=move-1?overwrite=false"
    );
    assert_eq!(
        client.pool("n3-cold").await.expect("pool").labels()["couchestor.io/steer"],
        "move-1"
    );
    // The same value again is fine; another value needs overwrite.
    client
        .put_pool_label("n3-cold", "couchestor.io/steer", "move-1", false)
        .await
        .expect("idempotent");
    let clash = client
        .put_pool_label("n3-cold", "couchestor.io/steer", "move-2", false)
        .await
        .expect_err("no overwrite");
    assert_eq!(
        (clash.status(), clash.kind()),
        (Some(412), Some("FailedPrecondition"))
    );
    client
        .put_pool_label("n3-cold", "couchestor.io/steer", "move-2", true)
        .await
        .expect("overwrite");
    assert_eq!(
        sim.with(|c| c
            .pool_labels("n3-cold")
            .map(|l| l["couchestor.io/steer"].clone())),
        Some("move-2".to_owned())
    );
    let pool = client
        .delete_pool_label("n3-cold", "couchestor.io/steer")
        .await
        .expect("unlabel");
    assert!(!pool.labels().contains_key("couchestor.io/steer"));
    let absent = client
        .delete_pool_label("n3-cold", "couchestor.io/steer")
        .await
        .expect_err("already gone");
    assert_eq!(
        (absent.status(), absent.kind()),
        (Some(412), Some("FailedPrecondition"))
    );
}

#[tokio::test]
async fn excluding_a_pool_uses_its_cordon_where_the_server_has_one() {
    let (sim, client) = start(two_tier(Behaviour::default())).await;
    let steering = client
        .exclude_pool("n3-cold", "tier")
        .await
        .expect("exclude");
    assert_eq!(
        steering,
        Steering::Cordoned {
            pool: "n3-cold".to_owned()
        }
    );
    let put = &sim.mutations()[0];
    assert_eq!(
        (put.method.as_str(), put.path.as_str()),
        ("PUT", "/v0/pools/n3-cold/cordon")
    );
    let body: serde_json::Value = serde_json::from_str(&put.body).expect("JSON body");
    assert_eq!(body["replicas"], true);
    assert!(
        client
            .pool("n3-cold")
            .await
            .expect("pool")
            .is_cordoned_for_replicas()
    );
    let v = client.set_replica_count(VOL, 3).await.expect("+1");
    assert_eq!(
        pools_of(&v),
        ["n1-hot", "n2-hot", "n4-cold"],
        "the cordon steered it"
    );

    let pool = client.restore(&steering).await.expect("restore");
    assert!(!pool.is_cordoned_for_replicas());
    assert!(!sim.with(|c| c.pool_cordoned("n3-cold")));
    assert_eq!(
        sim.mutations().last().map(|r| r.method.clone()),
        Some("DELETE".to_owned())
    );
}

#[tokio::test]
async fn without_pool_cordon_excluding_a_pool_falls_back_to_removing_its_inclusion_label() {
    let behaviour = Behaviour {
        pool_cordon_endpoint: false,
        ..Behaviour::default()
    };
    let (sim, client) = start(two_tier(behaviour)).await;
    let err = client
        .cordon_pool("n3-cold", PoolCordon::REPLICAS)
        .await
        .expect_err("old server");
    assert!(
        matches!(err, Error::Unsupported { status: 404, .. }),
        "{err}"
    );

    let steering = client
        .exclude_pool("n3-cold", "tier")
        .await
        .expect("exclude");
    assert_eq!(
        steering,
        Steering::Unlabelled {
            pool: "n3-cold".to_owned(),
            key: "tier".to_owned(),
            value: "cold".to_owned()
        }
    );
    let calls: Vec<(String, String)> = sim
        .log()
        .into_iter()
        .skip(1)
        .map(|r| (r.method, r.path))
        .collect();
    assert_eq!(
        calls,
        [
            ("PUT".to_owned(), "/v0/pools/n3-cold/cordon".to_owned()),
            ("GET".to_owned(), "/v0/pools/n3-cold".to_owned()),
            (
                "DELETE".to_owned(),
                "/v0/pools/n3-cold/label/tier".to_owned()
            ),
        ]
    );
    let v = client.set_replica_count(VOL, 3).await.expect("+1");
    assert_eq!(
        pools_of(&v),
        ["n1-hot", "n2-hot", "n4-cold"],
        "the missing label steered it"
    );

    client.restore(&steering).await.expect("restore");
    assert_eq!(
        sim.with(|c| c
            .pool_labels("n3-cold")
            .and_then(|l| l.get("tier").cloned())),
        Some("cold".to_owned())
    );
    // A pool without the key cannot be steered by label: nothing is changed.
    let before = sim.mutations().len();
    let err = client
        .exclude_pool("n3-cold", "media")
        .await
        .expect_err("no such label");
    assert!(matches!(err, Error::NoSteeringLabel { .. }), "{err}");
    assert_eq!(
        sim.mutations().len(),
        before + 1,
        "only the refused cordon attempt"
    );
}

#[tokio::test]
async fn node_cordons_round_trip_and_are_visible_on_the_node() {
    let (sim, client) = start(two_tier(Behaviour::default())).await;
    let node = client
        .cordon_node("n3", "couchestor")
        .await
        .expect("cordon");
    assert_eq!(node.cordon_labels(), ["couchestor"]);
    assert_eq!(sim.with(|c| c.node_cordons("n3")), ["couchestor"]);
    assert!(
        !sim.with(|c| c.eligible_pools(VOL))
            .contains(&"n3-cold".to_owned())
    );
    let node = client
        .uncordon_node("n3", "couchestor")
        .await
        .expect("uncordon");
    assert!(node.cordon_labels().is_empty());
    let err = client
        .uncordon_node("n3", "couchestor")
        .await
        .expect_err("not cordoned");
    assert_eq!(err.kind(), Some("FailedPrecondition"));
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_without_a_body_and_map_to_unsupported() {
    let (sim, _client) = start(two_tier(Behaviour::default())).await;
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let get = |path: &str, method: Method| {
        let request = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", sim.url()))
            .body(http_body_util::Empty::new())
            .expect("request");
        http.request(request)
    };
    let missing = get("/v0/pools/n1-hot/drain", Method::PUT)
        .await
        .expect("answer");
    assert_eq!(missing.status(), 404);
    let wrong = get("/v0/volumes", Method::POST).await.expect("answer");
    assert_eq!(wrong.status(), 405);
    let no_max = get("/v0/volumes", Method::GET).await.expect("answer");
    assert_eq!(no_max.status(), 400, "max_entries is required");
    let request = couchestor_operator::mayastor::Request {
        method: Method::PUT,
        path: "/v0/pools/n1-hot/drain".to_owned(),
    };
    let err = couchestor_operator::mayastor::decode::<serde_json::Value>(&request, 404, b"")
        .expect_err("unsupported");
    assert!(matches!(err, Error::Unsupported { .. }));
}

/// The raw answer (status line, headers, body) to `GET path`.
async fn raw_get(sim: &Sim, path: &str) -> String {
    let url = sim.url();
    let mut stream = tokio::net::TcpStream::connect(url.trim_start_matches("http://"))
        .await
        .expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    answer
}

#[tokio::test]
async fn the_simulator_speaks_the_specs_wire_names() {
    let (sim, client) = start(two_tier(Behaviour::default())).await;
    client.set_replica_count(VOL, 3).await.expect("+1");
    client.cordon_node("n4", "x").await.expect("cordon");
    let volume = raw_get(&sim, &format!("/v0/volumes/{VOL}")).await;
    for name in [
        "\"replica_topology\"",
        "\"child-status\"",
        "\"rebuild-progress\"",
        "\"rebuildProgress\"",
        "\"deviceUri\"",
        "\"num_replicas\"",
        "\"pool_topology\"",
        "\"inclusion\"",
        "\"affinitykey\"",
    ] {
        assert!(volume.contains(name), "{name} missing from {volume}");
    }
    let node = raw_get(&sim, "/v0/nodes/n4").await;
    for name in [
        "\"grpcEndpoint\"",
        "\"cordondrainstate\"",
        "\"cordonedstate\"",
        "\"cordonlabels\"",
    ] {
        assert!(node.contains(name), "{name} missing from {node}");
    }
    let pool = raw_get(&sim, "/v0/pools/n1-hot").await;
    for name in [
        "\"capacity\"",
        "\"used\"",
        "\"labels\"",
        "\"status\":\"Online\"",
    ] {
        assert!(pool.contains(name), "{name} missing from {pool}");
    }
}

#[tokio::test]
async fn the_bearer_token_is_sent_on_every_request_when_configured() {
    let sim = Sim::start(two_tier(Behaviour::default()))
        .await
        .expect("simulator");
    let mut config = Config::new(sim.url());
    config.bearer_token = Some("s3cret".to_owned());
    let client = Mayastor::new(config).expect("client");
    client.volume(VOL).await.expect("volume");
    client
        .put_pool_label("n3-cold", "k", "v", false)
        .await
        .expect("label");
    assert!(
        !format!("{client:?}").contains("s3cret"),
        "the token stays out of Debug"
    );
    let auth: Vec<Option<String>> = sim.log().into_iter().map(|r| r.authorization).collect();
    assert_eq!(
        auth,
        [
            Some("Bearer s3cret".to_owned()),
            Some("Bearer s3cret".to_owned())
        ]
    );

    let (sim, client) = start(two_tier(Behaviour::default())).await;
    client.volume(VOL).await.expect("volume");
    assert_eq!(sim.log()[0].authorization, None, "no token: no header");
}

#[test]
fn only_plain_http_urls_are_accepted() {
    for bad in ["https://rest:8080", "rest:8081", "ftp://rest", "http://"] {
        let err = Mayastor::new(Config::new(bad)).expect_err(bad);
        assert!(matches!(err, Error::Url { .. }), "{bad}: {err}");
    }
    Mayastor::new(Config::new("http://mayastor-api-rest:8081/")).expect("in-cluster URL");
}
