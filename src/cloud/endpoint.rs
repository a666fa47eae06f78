//! Where each product's calls go: the documented public endpoint per region,
//! or an override (`--endpoint dts=http://127.0.0.1:9000`).
//!
//! Hosts are built only from validated parts: a product code
//! ([`is_product_code`]) and a region id ([`is_region_id`]); a request with
//! anything else gets no host at all. An override is parsed strictly: a
//! known product, an `http`/`https` URL with a host and nothing else (no user
//! info, path, query or fragment).

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
    pub reason: String,
}

/// A request whose product or region is not a valid id: no host is built.
#[derive(Debug, thiserror::Error)]
#[error("no endpoint for product `{product}` in region `{region}`: {reason}")]
pub struct HostError {
    /// The product code asked for.
    pub product: String,
    /// The region asked for.
    pub region: String,
    /// Which part is invalid.
    pub reason: &'static str,
}

/// Whether `region` is a region id as Alibaba writes them: two lowercase
/// letters, then one or more `-`-separated groups of lowercase letters and
/// digits (`cn-hangzhou`, `ap-southeast-1`, `cn-shanghai-finance-1`).
pub fn is_region_id(region: &str) -> bool {
    let mut groups = region.split('-');
    let first = groups.next().unwrap_or_default();
    let mut rest = 0;
    for g in groups {
        if g.is_empty()
            || !g
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            return false;
        }
        rest += 1;
    }
    first.len() == 2 && first.chars().all(|c| c.is_ascii_lowercase()) && rest > 0
}

/// Whether `product` is a product code usable in a host name: lowercase
/// letters, digits and inner `-` (`dts`, `dataworks-public`, `ecs`).
pub fn is_product_code(product: &str) -> bool {
    !product.is_empty()
        && product.len() <= 63
        && !product.starts_with('-')
        && !product.ends_with('-')
        && product
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
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

    /// Parses one `PRODUCT=URL` flag value and adds it. The product must be
    /// a product code and the URL `http(s)://HOST[:PORT]` (a final `/` is
    /// fine); user info, a path, a query or a fragment are refused, so the
    /// URL means exactly the host it names. Whether the product is one the
    /// run calls is checked against the plan by [`Endpoints::check_products`].
    pub fn add_flag(&mut self, value: &str) -> Result<(), EndpointError> {
        let err = |reason: &str| EndpointError {
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let (product, url) = value.split_once('=').ok_or_else(|| err("missing `=`"))?;
        let product = product.to_ascii_lowercase();
        if product.is_empty() {
            return Err(err("empty product"));
        }
        if !is_product_code(&product) {
            return Err(err("the product must be a product code such as `dts`"));
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(err("the URL must start with http:// or https://"));
        }
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err("the URL contains spaces or control characters"));
        }
        let parsed = reqwest::Url::parse(url).map_err(|e| err(&format!("not a URL ({e})")))?;
        if !parsed.username().is_empty() || parsed.password().is_some() || url.contains('@') {
            return Err(err("the URL must not carry user info (`user@`)"));
        }
        if parsed.host().is_none() {
            return Err(err("the URL names no host"));
        }
        if !matches!(parsed.path(), "" | "/") {
            return Err(err("the URL must not have a path"));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(err("the URL must not have a query or fragment"));
        }
        self.set_override(&product, &parsed.origin().ascii_serialization());
        Ok(())
    }

    /// Refuses an override of a product the run never calls: a typo such as
    /// `--endpoint dst=...` would otherwise be ignored while the calls it
    /// meant to redirect go to the public endpoint. `used` are the product
    /// codes of the plan's calls.
    pub fn check_products<'a>(
        &self,
        used: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), String> {
        let used: std::collections::BTreeSet<String> =
            used.into_iter().map(str::to_ascii_lowercase).collect();
        let unknown: Vec<&str> = self
            .overrides
            .keys()
            .filter(|p| !used.contains(p.as_str()))
            .map(String::as_str)
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let calls = if used.is_empty() {
            "the playbook calls no API".to_owned()
        } else {
            format!(
                "the playbook calls {}",
                used.iter()
                    .map(|p| format!("`{p}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        Err(format!(
            "--endpoint names {} that no step calls ({calls})",
            unknown
                .iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }

    /// The overrides, by product.
    pub fn overrides(&self) -> &BTreeMap<String, String> {
        &self.overrides
    }

    /// The base URL (scheme and host, no path) for `product` in `region`.
    /// An empty region is the product's central endpoint; an invalid product
    /// or region gets no URL at all, override or not.
    pub fn resolve(&self, product: &str, region: &str) -> Result<String, HostError> {
        let product = product.to_ascii_lowercase();
        let refuse = |reason| HostError {
            product: product.clone(),
            region: region.to_owned(),
            reason,
        };
        if !is_product_code(&product) {
            return Err(refuse("not a product code"));
        }
        if !region.is_empty() && !is_region_id(region) {
            return Err(refuse("not a region id"));
        }
        if let Some(url) = self.overrides.get(&product).or(self.fallback.as_ref()) {
            return Ok(url.clone());
        }
        Ok(format!("https://{}", default_host(&product, region)))
    }
}

/// The documented public host of `product` in `region` (both validated by
/// the caller: see [`Endpoints::resolve`]).
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
        assert_eq!(
            e.resolve("dts", "cn-hangzhou").unwrap(),
            "http://127.0.0.1:9000"
        );
        assert!(e.add_flag("dts").is_err());
        assert!(e.add_flag("dts=ftp://x").is_err());
        for bad in [
            "dts=http://x@127.0.0.1:9000",
            "dts=http://127.0.0.1:9000/path",
            "dts=http://127.0.0.1:9000/?a=b",
            "dts=http://127.0.0.1:9000/#f",
            "dts=http:// 127.0.0.1",
            "d.ts=http://127.0.0.1",
            "=http://127.0.0.1",
        ] {
            assert!(e.add_flag(bad).is_err(), "{bad}");
        }
        assert!(is_loopback("http://127.0.0.1:9000"));
        assert!(is_loopback("http://localhost"));
        assert!(is_loopback("http://[::1]:80"));
        assert!(!is_loopback("http://10.0.0.1:80"));
        assert!(!is_loopback("https://dts.aliyuncs.com"));
        assert!(!is_loopback("http://127.0.0.1:9000@evil.example"));
        assert!(!is_loopback("http://127.0.0.1.evil.example"));
        assert!(!is_loopback("not a url"));
        e.set_fallback("http://127.0.0.1:1");
        assert_eq!(
            e.resolve("ecs", "cn-beijing").unwrap(),
            "http://127.0.0.1:1"
        );
        assert_eq!(
            e.resolve("dts", "cn-beijing").unwrap(),
            "http://127.0.0.1:9000"
        );
        assert!(e.check_products(["dts", "dataworks"]).is_ok());
        let m = e.check_products(["dataworks"]).unwrap_err();
        assert!(m.contains("`dts`"), "{m}");
    }

    #[test]
    fn hosts_are_built_only_from_valid_ids() {
        for ok in [
            "cn-hangzhou",
            "ap-southeast-1",
            "cn-shanghai-finance-1",
            "us-west-1",
        ] {
            assert!(is_region_id(ok), "{ok}");
        }
        for bad in [
            "",
            "cn",
            "cn-",
            "-cn",
            "CN-hangzhou",
            "cn--x",
            "x@evil.example:443/",
            "cn-hangzhou.evil",
            "c1-x",
            "cnn-x",
            "cn-hang zhou",
        ] {
            assert!(!is_region_id(bad), "{bad:?}");
        }
        let e = Endpoints::new();
        assert!(e.resolve("dts", "x@evil.example:443/").is_err());
        assert!(e.resolve("evil.example/", "cn-hangzhou").is_err());
        assert_eq!(e.resolve("dts", "").unwrap(), "https://dts.aliyuncs.com");
    }
}
