#![allow(clippy::unwrap_used, clippy::expect_used)]
use harvest_scripted_model::{ModelServer, Script};
fn main() {
    let path = std::env::args().nth(1).unwrap();
    let port: u16 = std::env::args().nth(2).unwrap().parse().unwrap();
    let script = Script::load(std::path::Path::new(&path)).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let s = ModelServer::start(script, ([127, 0, 0, 1], port).into())
            .await
            .unwrap();
        println!("{}", s.base_url());
        std::future::pending::<()>().await;
    });
}
