//! A thin client for Prometheus' HTTP API (`/api/v1/query`), and the one query the
//! operator asks per policy per cycle.
//!
//! Mayastor exports cumulative counters `volume_num_read_ops` / `volume_num_write_ops`
//! labelled `pv_name` (names configurable). One instant query returns, per volume, two
//! series told apart by a `couchestor` label:
//! - `iops`: `sum by (pv_name) (rate(reads[W]) + rate(writes[W]))`;
//! - `history`: seconds since the volume's first sample within two windows, capped at
//!   one window (so the planner can refuse to decide before a full window exists).
//!
//! Any failure — unreachable, timeout, HTTP error, Prometheus error, a malformed
//! answer — is an [`Error`]; [`loads_or_unknown`] turns it into *unknown* for every
//! volume, which never moves anything (unknown is not idle).

use std::{collections::BTreeMap, time::Duration};

use bytes::Bytes;
use couchestor_core::{duration::format_duration, tier::Load};
use http_body_util::{BodyExt, Empty};
use hyper::{Uri, body::Incoming};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde::Deserialize;

/// Metric and label names, configurable because exporters differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricNames {
    pub read_ops: String,
    pub write_ops: String,
    /// Label carrying the PersistentVolume name.
    pub volume_label: String,
}

impl Default for MetricNames {
    fn default() -> Self {
        Self {
            read_ops: "volume_num_read_ops".to_owned(),
            write_ops: "volume_num_write_ops".to_owned(),
            volume_label: "pv_name".to_owned(),
        }
    }
}

/// The batched query for a sampling window `window`.
pub fn loads_query(names: &MetricNames, window: Duration) -> String {
    let w = format_duration(window.max(Duration::from_secs(1)));
    // The history subquery looks back two windows, so a volume with a full window of
    // data reports at least one window (it is capped at one window when parsed).
    let lookback = format_duration(window.max(Duration::from_secs(1)) * 2);
    // Subquery resolution: 60 steps per window, at least one second.
    let step = format_duration((window / 60).max(Duration::from_secs(1)));
    let MetricNames {
        read_ops: r,
        write_ops: wr,
        volume_label: l,
    } = names;
    format!(
        "label_replace(sum by ({l}) (rate({r}[{w}]) + rate({wr}[{w}])), \"couchestor\", \"iops\", \"\", \"\") \
         or label_replace(time() - min by ({l}) (min_over_time(timestamp({r})[{lookback}:{step}])), \"couchestor\", \"history\", \"\", \"\")"
    )
}

/// Why Prometheus gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid Prometheus URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("Prometheus at {url} is unreachable: {source}")]
    Unreachable {
        url: String,
        source: hyper_util::client::legacy::Error,
    },
    #[error("Prometheus at {url} did not answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("Prometheus answered HTTP {status}: {body}")]
    Http { status: u16, body: String },
    #[error("Prometheus rejected the query ({kind}): {message}")]
    Query { kind: String, message: String },
    #[error("Prometheus' answer is malformed: {0}")]
    Malformed(String),
}

/// One sample of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A Prometheus server.
#[derive(Debug, Clone)]
pub struct Prometheus {
    base: String,
    client: Client<HttpConnector, Empty<Bytes>>,
    timeout: Duration,
}

impl Prometheus {
    /// A client for `base_url` (`http://host:port`, optionally with a path prefix).
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, Error> {
        let base = base_url.trim_end_matches('/').to_owned();
        let uri: Uri = base
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| Error::Url {
                url: base.clone(),
                reason: e.to_string(),
            })?;
        if uri.scheme_str() != Some("http") {
            return Err(Error::Url {
                url: base,
                reason: "only http:// is supported".to_owned(),
            });
        }
        let client = Client::builder(TokioExecutor::new()).build_http();
        Ok(Self {
            base,
            client,
            timeout,
        })
    }

    /// Runs an instant query and returns its vector.
    pub async fn instant(&self, query: &str) -> Result<Vec<Sample>, Error> {
        let encoded: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("query", query)
            .finish();
        let url = format!("{}/api/v1/query?{encoded}", self.base);
        let uri: Uri = url
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| Error::Url {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let call = async {
            let response = self
                .client
                .get(uri)
                .await
                .map_err(|source| Error::Unreachable {
                    url: self.base.clone(),
                    source,
                })?;
            read(response).await
        };
        let (status, body) = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| Error::Timeout {
                url: self.base.clone(),
                timeout: self.timeout,
            })??;
        parse(status, &body)
    }

    /// IOPS and history of every volume the exporter reports.
    pub async fn volume_loads(
        &self,
        names: &MetricNames,
        window: Duration,
    ) -> Result<BTreeMap<String, Load>, Error> {
        let samples = self.instant(&loads_query(names, window)).await?;
        Ok(loads_from(&samples, names, window))
    }
}

async fn read(response: hyper::Response<Incoming>) -> Result<(u16, Bytes), Error> {
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| Error::Malformed(format!("reading the body: {e}")))?
        .to_bytes();
    Ok((status, body))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiData {
    result_type: String,
    result: Vec<ApiSample>,
}

#[derive(Deserialize)]
struct ApiSample {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

/// Parses an `/api/v1/query` answer.
pub fn parse(status: u16, body: &[u8]) -> Result<Vec<Sample>, Error> {
    let api: ApiResponse = match serde_json::from_slice(body) {
        Ok(api) => api,
        Err(e) if status != 200 => {
            let _ = e;
            return Err(Error::Http {
                status,
                body: String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned(),
            });
        }
        Err(e) => return Err(Error::Malformed(e.to_string())),
    };
    if api.status != "success" {
        return Err(Error::Query {
            kind: api.error_type.unwrap_or_else(|| "unknown".to_owned()),
            message: api.error.unwrap_or_default(),
        });
    }
    let data = api
        .data
        .ok_or_else(|| Error::Malformed("no data in a successful answer".to_owned()))?;
    if data.result_type != "vector" {
        return Err(Error::Malformed(format!(
            "expected a vector, got {}",
            data.result_type
        )));
    }
    data.result
        .into_iter()
        .map(|s| {
            let value = s
                .value
                .1
                .parse::<f64>()
                .map_err(|e| Error::Malformed(format!("value {:?}: {e}", s.value.1)))?;
            Ok(Sample {
                labels: s.metric,
                value,
            })
        })
        .collect()
}

/// Turns the samples of [`loads_query`] into loads. A volume without both an `iops`
/// and a `history` sample, or with a non-finite or negative value, is unknown.
pub fn loads_from(
    samples: &[Sample],
    names: &MetricNames,
    window: Duration,
) -> BTreeMap<String, Load> {
    let mut iops: BTreeMap<&str, f64> = BTreeMap::new();
    let mut history: BTreeMap<&str, f64> = BTreeMap::new();
    let mut volumes: Vec<&str> = Vec::new();
    for s in samples {
        let Some(volume) = s.labels.get(&names.volume_label) else {
            continue;
        };
        volumes.push(volume);
        match s.labels.get("couchestor").map(String::as_str) {
            Some("iops") => {
                iops.insert(volume, s.value);
            }
            Some("history") => {
                history.insert(volume, s.value);
            }
            _ => {}
        }
    }
    volumes
        .into_iter()
        .map(|v| {
            let load = match (iops.get(v), history.get(v)) {
                (Some(&i), Some(&h)) if i.is_finite() && i >= 0.0 && h.is_finite() && h >= 0.0 => {
                    Load::Known {
                        iops: i,
                        history: Duration::from_secs_f64(h).min(window),
                    }
                }
                _ => Load::Unknown,
            };
            (v.to_owned(), load)
        })
        .collect()
}

/// The loads of `volumes`: from Prometheus when it answered, otherwise every one
/// unknown, with the reason for the `MetricsAvailable=False` condition.
pub fn loads_or_unknown(
    answer: Result<BTreeMap<String, Load>, Error>,
    volumes: &[String],
) -> (BTreeMap<String, Load>, Option<String>) {
    match answer {
        Ok(mut loads) => {
            let out = volumes
                .iter()
                .map(|v| (v.clone(), loads.remove(v).unwrap_or(Load::Unknown)))
                .collect();
            (out, None)
        }
        Err(e) => (
            volumes.iter().map(|v| (v.clone(), Load::Unknown)).collect(),
            Some(e.to_string()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_uses_the_configured_names_and_window() {
        let names = MetricNames {
            read_ops: "r_ops".into(),
            write_ops: "w_ops".into(),
            volume_label: "pv".into(),
        };
        let q = loads_query(&names, Duration::from_secs(3600));
        assert!(
            q.contains("sum by (pv) (rate(r_ops[1h]) + rate(w_ops[1h]))"),
            "{q}"
        );
        assert!(q.contains("min_over_time(timestamp(r_ops)[2h:1m])"), "{q}");
    }

    #[test]
    fn prometheus_errors_and_malformed_answers_are_errors() {
        let err = parse(
            400,
            br#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#,
        )
        .expect_err("error");
        assert!(
            err.to_string().contains("bad_data") && err.to_string().contains("parse error"),
            "{err}"
        );
        assert!(matches!(
            parse(502, b"<html>bad gateway</html>"),
            Err(Error::Http { status: 502, .. })
        ));
        assert!(matches!(
            parse(200, b"{\"status\":\"success\"}"),
            Err(Error::Malformed(_))
        ));
        assert!(matches!(
            parse(
                200,
                br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#
            ),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn a_volume_missing_a_series_or_with_nan_is_unknown_not_idle() {
        let names = MetricNames::default();
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"pv_name":"a","couchestor":"iops"},"value":[1,"120.5"]},
            {"metric":{"pv_name":"a","couchestor":"history"},"value":[1,"7200"]},
            {"metric":{"pv_name":"b","couchestor":"iops"},"value":[1,"NaN"]},
            {"metric":{"pv_name":"b","couchestor":"history"},"value":[1,"7200"]},
            {"metric":{"pv_name":"c","couchestor":"iops"},"value":[1,"3"]}
        ]}}"#;
        let loads = loads_from(
            &parse(200, body).expect("parses"),
            &names,
            Duration::from_secs(3600),
        );
        assert_eq!(
            loads["a"],
            Load::Known {
                iops: 120.5,
                history: Duration::from_secs(3600)
            }
        );
        assert_eq!(loads["b"], Load::Unknown);
        assert_eq!(loads["c"], Load::Unknown);
        let (all, why) = loads_or_unknown(Ok(loads), &["a".into(), "d".into()]);
        assert!(why.is_none());
        assert_eq!(
            all["d"],
            Load::Unknown,
            "a volume Prometheus does not know is unknown"
        );
    }
}
