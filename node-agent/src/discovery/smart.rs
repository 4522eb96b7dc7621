//! SMART from `smartctl --json` (smartmontools), or the reason there is none.
//!
//! | field | read from |
//! |---|---|
//! | `passed` | `smart_status.passed` |
//! | `temperatureCelsius` | `temperature.current` |
//! | `powerOnHours` | `power_on_time.hours` |
//! | `mediaErrors` | NVMe `nvme_smart_health_information_log.media_errors`; ATA raw value of attribute 187 (Reported_Uncorrect), else 198 (Offline_Uncorrectable) in `ata_smart_attributes.table`; SCSI `scsi_error_counter_log.{read,write,verify}.total_uncorrected_errors` summed |
//! | `percentageUsed` | NVMe `nvme_smart_health_information_log.percentage_used`; SCSI `scsi_percentage_used_endurance_indicator`; ATA device statistics "Percentage Used Endurance Indicator" |
//!
//! A field smartctl did not report stays absent. When none is reported the device is
//! "absent" with smartctl's own messages, never a record of zeros.

use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use couchestor_core::api::SmartData;
use serde_json::Value;

use super::SmartSource;

/// What SMART said about one device.
#[derive(Debug, Clone, PartialEq)]
pub enum SmartOutcome {
    Data(SmartData),
    /// No SMART data, and why.
    Absent(String),
}

/// A `smartctl` that exists on this machine.
#[derive(Debug, Clone)]
pub struct Smartctl {
    program: PathBuf,
    timeout: Duration,
}

/// The reason given when smartmontools is missing.
pub const NOT_INSTALLED: &str = "smartctl not installed";

impl Smartctl {
    /// Finds the program (a bare name in `PATH`); `Err(reason)` when SMART is off or
    /// smartctl is not installed.
    pub fn resolve(source: &SmartSource) -> Result<Smartctl, String> {
        match source {
            SmartSource::Off => Err("SMART not requested".into()),
            SmartSource::Smartctl { program, timeout } => match find_program(program) {
                Some(program) => Ok(Smartctl {
                    program,
                    timeout: *timeout,
                }),
                None => Err(format!(
                    "{NOT_INSTALLED}: no {} on PATH or in /usr/sbin; install smartmontools",
                    Path::new(program).display()
                )),
            },
        }
    }

    /// Runs `smartctl --json -a -n standby <device>` (a disk in standby is not spun up)
    /// and parses its output; killed after the timeout.
    pub fn read(&self, device: &str) -> SmartOutcome {
        let spawn = || {
            Command::new(&self.program)
                .args(["--json", "-a", "-n", "standby", device])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
        };
        // ETXTBSY: the program was just written and another thread's fork still holds
        // it open for writing until that child's exec; it clears within milliseconds.
        let mut spawned = spawn();
        for _ in 0..5 {
            match &spawned {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    spawned = spawn();
                }
                _ => break,
            }
        }
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                return SmartOutcome::Absent(format!("cannot run {}: {e}", self.program.display()));
            }
        };
        let Some(mut stdout) = child.stdout.take() else {
            return SmartOutcome::Absent("smartctl stdout not captured".into());
        };
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            stdout.read_to_end(&mut out).map(|_| out)
        });
        let deadline = Instant::now() + self.timeout;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return SmartOutcome::Absent(format!(
                        "smartctl did not answer within {:?}",
                        self.timeout
                    ));
                }
                Err(e) => return SmartOutcome::Absent(format!("waiting for smartctl: {e}")),
            }
        }
        match reader.join() {
            Ok(Ok(out)) => parse(&out),
            Ok(Err(e)) => SmartOutcome::Absent(format!("reading smartctl's output: {e}")),
            Err(_) => SmartOutcome::Absent("smartctl output reader panicked".into()),
        }
    }
}

fn find_program(program: &OsStr) -> Option<PathBuf> {
    let as_path = Path::new(program);
    if as_path.components().count() > 1 {
        return as_path.is_file().then(|| as_path.to_path_buf());
    }
    // smartmontools installs into /usr/sbin, which a non-root PATH often lacks.
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Parses `smartctl --json` output.
pub fn parse(json: &[u8]) -> SmartOutcome {
    let value: Value = match serde_json::from_slice(json) {
        Ok(v) => v,
        Err(e) => return SmartOutcome::Absent(format!("smartctl output is not JSON: {e}")),
    };
    let nvme = &value["nvme_smart_health_information_log"];
    let data = SmartData {
        passed: value["smart_status"]["passed"].as_bool(),
        temperature_celsius: value["temperature"]["current"].as_i64(),
        power_on_hours: value["power_on_time"]["hours"].as_u64(),
        media_errors: nvme["media_errors"]
            .as_u64()
            .or_else(|| ata_raw(&value, 187))
            .or_else(|| ata_raw(&value, 198))
            .or_else(|| scsi_uncorrected(&value)),
        percentage_used: nvme["percentage_used"]
            .as_u64()
            .or_else(|| value["scsi_percentage_used_endurance_indicator"].as_u64())
            .or_else(|| ata_statistic(&value, "Percentage Used Endurance Indicator"))
            .and_then(|p| u32::try_from(p).ok()),
    };
    if data == SmartData::default() {
        return SmartOutcome::Absent(no_data_reason(&value));
    }
    SmartOutcome::Data(data)
}

/// The raw value of ATA attribute `id`.
fn ata_raw(value: &Value, id: u64) -> Option<u64> {
    value["ata_smart_attributes"]["table"]
        .as_array()?
        .iter()
        .find(|a| a["id"].as_u64() == Some(id))?["raw"]["value"]
        .as_u64()
}

/// An entry of the ATA Device Statistics log, by name.
fn ata_statistic(value: &Value, name: &str) -> Option<u64> {
    value["ata_device_statistics"]["pages"]
        .as_array()?
        .iter()
        .filter_map(|page| page["table"].as_array())
        .flatten()
        .find(|entry| entry["name"].as_str() == Some(name))?["value"]
        .as_u64()
}

fn scsi_uncorrected(value: &Value) -> Option<u64> {
    let log = value.get("scsi_error_counter_log")?;
    let counts: Vec<u64> = ["read", "write", "verify"]
        .iter()
        .filter_map(|k| log[*k]["total_uncorrected_errors"].as_u64())
        .collect();
    (!counts.is_empty()).then(|| counts.iter().sum())
}

/// smartctl's own error messages, else its exit status.
fn no_data_reason(value: &Value) -> String {
    let messages: Vec<&str> = value["smartctl"]["messages"]
        .as_array()
        .map(|m| m.iter().filter_map(|m| m["string"].as_str()).collect())
        .unwrap_or_default();
    let status = value["smartctl"]["exit_status"].as_i64().map_or_else(
        || "no exit status".to_owned(),
        |s| format!("exit status {s}"),
    );
    if messages.is_empty() {
        format!("smartctl reported no SMART data ({status})")
    } else {
        format!(
            "smartctl reported no SMART data ({status}): {}",
            messages.join("; ")
        )
    }
}
