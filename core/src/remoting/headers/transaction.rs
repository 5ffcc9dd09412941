//! END_TRANSACTION (37) and CHECK_TRANSACTION_STATE (39), spec §3.8, §3.9.

use crate::remoting::ext::ext_header;

/// `commitOrRollback` / sysflag transaction type values.
pub struct TransactionType;

impl TransactionType {
    pub const NOT_TYPE: i32 = 0;
    pub const PREPARED: i32 = 4;
    pub const COMMIT: i32 = 8;
    pub const ROLLBACK: i32 = 12;
}

ext_header! {
    /// END_TRANSACTION request (Java sends it oneway).
    pub struct EndTransactionRequestHeader<'a> {
        pub producer_group: &'a str = "producerGroup",
        /// Queue offset of the half message.
        pub tran_state_table_offset: i64 = "tranStateTableOffset",
        /// CommitLog offset of the half message.
        pub commit_log_offset: i64 = "commitLogOffset",
        /// 0 unknown, 8 commit, 12 rollback.
        pub commit_or_rollback: i32 = "commitOrRollback",
        pub from_transaction_check: Option<bool> = "fromTransactionCheck",
        pub msg_id: &'a str = "msgId",
        pub transaction_id: Option<&'a str> = "transactionId",
        pub topic: Option<&'a str> = "topic",
        pub broker_name: Option<&'a str> = "bname",
    }
}

ext_header! {
    /// CHECK_TRANSACTION_STATE (broker -> producer, oneway); body = the half message record.
    pub struct CheckTransactionStateRequestHeader<'a> {
        pub tran_state_table_offset: i64 = "tranStateTableOffset",
        pub commit_log_offset: i64 = "commitLogOffset",
        pub msg_id: Option<&'a str> = "msgId",
        pub transaction_id: Option<&'a str> = "transactionId",
        pub offset_msg_id: Option<&'a str> = "offsetMsgId",
        pub topic: Option<&'a str> = "topic",
        pub broker_name: Option<&'a str> = "bname",
    }
}
