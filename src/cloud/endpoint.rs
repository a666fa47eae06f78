//! Where each product's calls go: the documented public endpoint per region,
//! or an override (`--endpoint dts=http://127.0.0.1:9000`).

use std::collections::BTreeMap;

/// Endpoint resolution with per-product overrides.
#[derive(Clone, Debug, Default)]
pub struct Endpoints {
    overrides: BTreeMap<String, String>,
    /// Where every product without an override goes (the simulator, which
    /// must catch every call of a rehearsal, generic `api` calls included).
    fallback: Option<String>,
}

/// A malformed `--endpoint` value.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid endpoint `{value}`: {reason} (expected PRODUCT=URL, e.g. dts=http://127.0.0.1:9000)"
)]
pub struct EndpointError {
    /// What was given.
    pub value: String,
    /// Why it was refused.
    pub reason: &'static str,
}

impl Endpoints {
    /// No overrides: the documented public endpoints.
    pub fn new() -> Endpoints {
        Endpoints::default()
    }

    /// Sends every call of `product` to `base_url` (e.g. `http://127.0.0.1:9000`).
    pub fn set_override(&mut self, product: &str, base_url: &str) {
        self.overrides.insert(
            product.to_ascii_lowercase(),
            base_url.trim_end_matches('/').to_owned(),
        );
    }

    /// Sends every product that has no override of its own to `base_url`.
    pub fn set_fallback(&mut self, base_url: &str) {
        self.fallback = Some(base_url.trim_end_matches('/').to_owned());
    }

    /// Parses one `PRODUCT=URL` flag value and adds it.
    pub fn add_flag(&mut self, value: &str) -> Result<(), EndpointError> {
        let err = |reason| EndpointError {
            value: value.to_owned(),
            reason,
        };
        let (product, url) = value.split_once('=').ok_or_else(|| err("missing `=`"))?;
        if product.is_empty() {
            return Err(err("empty product"));
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(err("the URL must start with http:// or https://"));
        }
        self.set_override(product, url);
        Ok(())
    }

    /// The overrides, by product.
    pub fn overrides(&self) -> &BTreeMap<String, String> {
        &self.overrides
    }

    /// The base URL (scheme and host, no path) for `product` in `region`.
    pub fn resolve(&self, product: &str, region: &str) -> String {
        let product = product.to_ascii_lowercase();
        if let Some(url) = self.overrides.get(&product).or(self.fallback.as_ref()) {
            return url.clone();
        }
        format!("https://{}", default_host(&product, region))
    }
}

/// The documented public host of `product` in `region`.
pub fn default_host(product: &str, region: &str) -> String {
    match product {
        "dataworks" | "dataworks-public" => match region {
            // Regions served by the central endpoint (DataWorks endpoint table).
            "cn-huhehaote" | "cn-qingdao" | "" => "dataworks.aliyuncs.com".to_owned(),
            r => format!("dataworks.{r}.aliyuncs.com"),
        },
        "dts" => match region {
            // Regions the DTS request-syntax page sends to the central endpoint.
            "cn-wulanchabu" | "cn-chengdu" | "" => "dts.aliyuncs.com".to_owned(),
            "cn-hangzhou-finance" => "dts.cn-hangzhou.aliyuncs.com".to_owned(),
            r => format!("dts.{r}.aliyuncs.com"),
        },
        other if region.is_empty() => format!("{other}.aliyuncs.com"),
        other => format!("{other}.{region}.aliyuncs.com"),
    }
}

/// Whether `base_url` points at this machine (plain HTTP is fine there).
/// The URL is parsed as a client would connect to it, so user info such as
/// `http://127.0.0.1@example.com` is not mistaken for the host.
pub fn is_loopback(base_url: &str) -> bool {
    match reqwest::Url::parse(base_url)
        .ok()
        .as_ref()
        .and_then(reqwest::Url::host)
    {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_hosts() {
        assert_eq!(
            default_host("dataworks", "cn-shanghai"),
            "dataworks.cn-shanghai.aliyuncs.com"
        );
        assert_eq!(
            default_host("dataworks", "cn-qingdao"),
            "dataworks.aliyuncs.com"
        );
        assert_eq!(
            default_host("dts", "cn-hangzhou"),
            "dts.cn-hangzhou.aliyuncs.com"
        );
        assert_eq!(default_host("dts", "cn-chengdu"), "dts.aliyuncs.com");
        assert_eq!(
            default_host("ecs", "cn-beijing"),
            "ecs.cn-beijing.aliyuncs.com"
        );
    }

    #[test]
    fn overrides_and_loopback() {
        let mut e = Endpoints::new();
        e.add_flag("DTS=http://127.0.0.1:9000/").unwrap();
        assert_eq!(e.resolve("dts", "cn-hangzhou"), "http://127.0.0.1:9000");
        assert!(e.add_flag("dts").is_err());
        assert!(e.add_flag("dts=ftp://x").is_err());
        assert!(is_loopback("http://127.0.0.1:9000"));
        assert!(is_loopback("http://localhost"));
        assert!(is_loopback("http://[::1]:80"));
        assert!(!is_loopback("http://10.0.0.1:80"));
        assert!(!is_loopback("https://dts.aliyuncs.com"));
        assert!(!is_loopback("http://127.0.0.1:9000@evil.example"));
        assert!(!is_loopback("http://127.0.0.1.evil.example"));
        assert!(!is_loopback("not a url"));
        e.set_fallback("http://127.0.0.1:1");
        assert_eq!(e.resolve("ecs", "cn-beijing"), "http://127.0.0.1:1");
        assert_eq!(e.resolve("dts", "cn-beijing"), "http://127.0.0.1:9000");
    }
}
