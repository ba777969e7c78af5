//! Spill files: rows written to Arrow IPC stream files of the runtime's disk manager and read
//! back, for the work that holds more rows than its memory allows (the Z-order rewrite's
//! buckets, the joins of `engine::grace_join`). A file is deleted when its last handle drops.

use std::fs::File;
use std::io::{BufReader, BufWriter};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::execution::disk_manager::RefCountedTempFile;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;

use crate::error::{Result, ResultExt};

/// A spill file being written.
pub struct SpillWriter {
    file: RefCountedTempFile,
    writer: StreamWriter<BufWriter<File>>,
}

impl SpillWriter {
    /// A new file of `runtime`'s disk manager for rows of `schema`; `purpose` names it in the
    /// disk manager's errors.
    pub fn create(runtime: &RuntimeEnv, schema: &SchemaRef, purpose: &str) -> Result<Self> {
        let file = runtime.disk_manager.create_tmp_file(purpose)?;
        let handle = File::create(file.path())
            .context(|| format!("creating the spill file '{}'", file.path().display()))?;
        let writer = StreamWriter::try_new(BufWriter::new(handle), schema)?;
        Ok(Self { file, writer })
    }

    /// Appends `batch`.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let path = self.file.path();
        self.writer
            .write(batch)
            .context(|| format!("spilling rows to '{}'", path.display()))
    }

    /// Ends the file; the handle keeps it on disk.
    pub fn finish(mut self) -> Result<RefCountedTempFile> {
        let path = self.file.path();
        self.writer
            .finish()
            .context(|| format!("spilling rows to '{}'", path.display()))?;
        Ok(self.file)
    }
}

/// Every batch of `file`, in the order written.
pub fn read(file: &RefCountedTempFile) -> Result<Vec<RecordBatch>> {
    batches(file)?.collect()
}

/// The batches of `file` as they are read, each error naming the file.
fn batches(file: &RefCountedTempFile) -> Result<impl Iterator<Item = Result<RecordBatch>> + '_> {
    let path = file.path();
    let reading = move || format!("reading the spill file '{}'", path.display());
    let handle = File::open(path).context(reading)?;
    let reader = StreamReader::try_new(BufReader::new(handle), None).context(reading)?;
    Ok(reader.map(move |batch| batch.context(reading)))
}

/// The batches of `files` (rows of `schema`), one file after another, read on a blocking
/// thread a couple of batches ahead of the consumer.
pub fn stream(files: Vec<RefCountedTempFile>, schema: SchemaRef) -> SendableRecordBatchStream {
    let (sender, receiver) = tokio::sync::mpsc::channel(2);
    tokio::task::spawn_blocking(move || {
        send_batches(&files, &sender);
        // The files go before the stream ends.
        drop(files);
        drop(sender);
    });
    Box::pin(RecordBatchStreamAdapter::new(
        schema,
        tokio_stream::wrappers::ReceiverStream::new(receiver),
    ))
}

/// Sends the batches of `files` to `sender`, until the first error or until nobody receives.
fn send_batches(
    files: &[RefCountedTempFile],
    sender: &tokio::sync::mpsc::Sender<datafusion::error::Result<RecordBatch>>,
) {
    for file in files {
        let batches = match batches(file) {
            Ok(batches) => batches,
            Err(e) => {
                let _ = sender.blocking_send(Err(e.into()));
                return;
            }
        };
        for batch in batches {
            let batch = batch.map_err(Into::into);
            let failed = batch.is_err();
            if sender.blocking_send(batch).is_err() || failed {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use futures::TryStreamExt;
    use std::sync::Arc;

    #[tokio::test]
    async fn rows_come_back_in_the_order_written_across_files_and_the_files_go_with_their_handles()
    {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let batch = |from: i64| {
            let ids: Int64Array = (from..from + 3).collect();
            let names = StringArray::from(vec![Some("a"), None, Some("c")]);
            RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(ids), Arc::new(names)]).unwrap()
        };
        let runtime = RuntimeEnvBuilder::new().build().unwrap();
        let mut files = Vec::new();
        for from in [0, 10] {
            let mut writer = SpillWriter::create(&runtime, &schema, "test").unwrap();
            writer.write(&batch(from)).unwrap();
            writer.write(&batch(from + 3)).unwrap();
            files.push(writer.finish().unwrap());
        }
        assert_eq!(read(&files[1]).unwrap(), vec![batch(10), batch(13)]);
        let path = files[0].path().to_path_buf();
        let streamed: Vec<RecordBatch> = stream(files, Arc::clone(&schema))
            .try_collect()
            .await
            .unwrap();
        assert_eq!(streamed, vec![batch(0), batch(3), batch(10), batch(13)]);
        assert!(!path.exists(), "the file is deleted with its last handle");
    }
}
